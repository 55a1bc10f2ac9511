"""Send one email over SMTP."""

from __future__ import annotations

import functools
import re
import socket
import time
from dataclasses import dataclass
from email.header import Header
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage as MimeMessage
from email.policy import Policy
from email.policy import default as default_policy
from email.utils import formatdate
from typing import Any, TypeVar

import aiosmtplib
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.fallback import FALLBACK, PRIMARY, Provider, provider_for, unreachable
from common.logs import log_event
from common.models import DeliveryReceipt, EmailMessage, FailureDetail
from common.settings import Settings

_Result = TypeVar("_Result")

# "Service not available, closing transmission channel": a server ending a session it kept idle.
CLOSING = 421
_NOT_DOT_ATOM = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")


def message_id(idempotency_key: str) -> str:
    # The job's idempotency key as Message-ID lets a provider drop a duplicate after a retry. A
    # scheduled run's id ends in a time (`...-2026-11-30T22:54:40Z`): a ':' is not allowed there
    # (RFC 5322 dot-atom), so every character outside it becomes '.'.
    return f"<{_NOT_DOT_ATOM.sub('.', idempotency_key)}@herald>"


class _EncodedSubject(str):
    """A subject that contains text looking like an RFC 2047 encoded word (`=?utf-8?q?...?=`).

    Python's email package would send such text as it is, and every reader would then show it
    decoded: the subject would not arrive as the client wrote it. This value is stored unparsed (it
    has the header's `name`) and folds itself as encoded words, which read back as the very text.
    """

    name = "Subject"

    def fold(self, *, policy: Policy) -> str:
        encoded = Header(str(self), "utf-8", header_name=self.name).encode(linesep=policy.linesep)
        return f"{self.name}: {encoded}{policy.linesep}"


def _one_line(name: str, value: str) -> str:
    # The email package refuses a line break inside a header value but passes a trailing one, which
    # would end the header block there (the headers after it would become the body).
    if len(f"{value}.".splitlines()) > 1:
        raise ValueError(f"the {name} header must be one line")
    return value


class _HeaderClasses(HeaderRegistry):
    """The email package's header registry, each header's class made once: the stock registry
    builds a new class (type()) for every header it parses, some 10 µs a header."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        made = self._made.get(name.lower())
        if made is None:
            made = self._made[name.lower()] = super().__getitem__(name)
        return made


# email.policy.default (what EmailMessage() uses), with that registry: the same headers and bytes.
_POLICY = default_policy.clone(header_factory=_HeaderClasses())


class _FoldedOnce:
    """Mixed into a header object that goes into every message (the From, a body's Content-Type,
    Content-Transfer-Encoding, MIME-Version): its folded text is kept per folding policy. The
    generator folds every header of every message it writes (aiosmtplib with email.policy.SMTP),
    about half of a batch email's flattening CPU; these four are the same each time."""

    __slots__ = ()

    def fold(self, *, policy: Policy) -> str:
        key = (policy.linesep, policy.max_line_length, getattr(policy, "utf8", False), policy.cte_type)
        folds: dict[tuple[Any, ...], str] = self.__dict__.setdefault("_herald_folds", {})
        text = folds.get(key)
        if text is None:
            text = folds[key] = super().fold(policy=policy)  # type: ignore[misc]  # (a header class follows)
        return text


_FOLDING_ONCE: dict[type, type] = {}


def _fold_once(header: Any) -> Any:
    """The same header object, its folds kept from now on (its class gains _FoldedOnce)."""
    made = _FOLDING_ONCE.get(type(header))
    if made is None:
        made = _FOLDING_ONCE[type(header)] = type(type(header).__name__, (_FoldedOnce, type(header)), {})
    header.__class__ = made
    return header


@functools.lru_cache(maxsize=8)
def _parsed_from(email_from: str) -> Any:
    """The From header as the email package parses it: the same for every message."""
    mime = MimeMessage(policy=_POLICY)
    mime["From"] = email_from
    return _fold_once(next(iter(mime.raw_items()))[1])


@functools.lru_cache(maxsize=64)
def _parsed_subject(subject: str) -> Any:
    """A Subject header as the email package parses and folds it: a batch's items share one."""
    if "=?" in subject:
        return _EncodedSubject(subject)  # stored unparsed; it folds itself
    mime = MimeMessage(policy=_POLICY)
    mime["Subject"] = subject
    return _fold_once(next(iter(mime.raw_items()))[1])


@functools.lru_cache(maxsize=4)
def _date_header(second: int) -> Any:
    """The Date header of every message built within that second (formatdate's precision)."""
    mime = MimeMessage(policy=_POLICY)
    mime["Date"] = formatdate(second, localtime=False)
    return _fold_once(next(iter(mime.raw_items()))[1])


@functools.lru_cache(maxsize=16)
def _text_content(body: str) -> tuple[tuple[tuple[str, Any], ...], Any]:
    """What set_content(body) adds to a message (its headers, already parsed, and the encoded
    payload): the same for every message with that body, such as a batch's newsletter, and most of
    the CPU a message costs to build."""
    mime = MimeMessage(policy=_POLICY)
    mime.set_content(body)
    # The payload as set_content stored it (get_payload() would decode an 8bit one back to text).
    headers = tuple((name, _fold_once(value)) for name, value in mime.raw_items())
    return headers, mime._payload  # type: ignore[attr-defined]  # (private: not in typeshed)


# An address the email package writes back exactly as given: an ASCII dot-atom local part and domain,
# short enough that the header needs no folding (a To line of at most 78 characters).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*"
)
_PLAIN_ADDRESS_MAX = 74


def _set_to(mime: MimeMessage, to: str) -> None:
    if len(to) <= _PLAIN_ADDRESS_MAX and _PLAIN_ADDRESS.fullmatch(to):
        # Stored as it is: the email package would parse it into a tree (about 30% of the CPU of
        # building and flattening a batch email) only to write back the same text.
        mime.set_raw("To", to)
    else:
        mime["To"] = to


def envelope_recipients(mime: MimeMessage) -> list[str]:
    """RCPT TO: the To header's addresses; a To stored as it is (_set_to) is one plain address."""
    recipients: list[str] = []
    for name, value in mime.raw_items():
        if name.lower() == "to":
            addresses = getattr(value, "addresses", None)
            recipients += [value] if addresses is None else [address.addr_spec for address in addresses]
    return recipients


def build_message(settings: Settings, email: EmailMessage) -> MimeMessage:
    """The message as sent; a ValueError for a header value that is not one line."""
    mime = MimeMessage(policy=_POLICY)
    mime.set_raw("From", _parsed_from(settings.email_from))
    _set_to(mime, _one_line("To", email.to))
    # Parsed and folded once for all the messages that share them (a batch's subject, this second).
    mime.set_raw("Subject", _parsed_subject(_one_line("Subject", email.subject)))
    mime.set_raw("Date", _date_header(int(time.time())))
    # ASCII by construction; one too long for a line is parsed and folded when the message is written.
    mime.set_raw("Message-ID", message_id(email.idempotency_key))
    if email.html is None:
        # Exactly what mime.set_content(email.body) would do, taken from a message built once per body.
        headers, payload = _text_content(email.body)
        for name, value in headers:
            mime.set_raw(name, value)
        mime.set_payload(payload)
    else:
        mime.set_content(email.body)
    if email.html is not None:
        # multipart/alternative: the plain text first, the HTML (preferred by readers that show it) last.
        mime.add_alternative(email.html, subtype="html")
    return mime


class EmailActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The EHLO name, once: aiosmtplib would otherwise look it up (getfqdn, in a thread) per send.
        self.local_hostname = settings.smtp_local_hostname or socket.getfqdn()
        # One pool for the worker's jobs and batch items: at most a session per send in flight.
        self.sessions = SmtpSessions(
            self.local_hostname,
            settings.smtp_timeout_seconds,
            keep=settings.email_concurrency + settings.batch_send_concurrency,
            idle_seconds=settings.smtp_session_idle_seconds,
            messages=settings.smtp_session_messages,
        )

    def _relay(self, attempt: int, max_attempts: int) -> _Relay:
        s = self.settings
        # The fallback relay takes the last attempt: by then the primary has kept failing
        # (activities/fallback.py).
        if s.smtp_fallback_host and provider_for(True, attempt, max_attempts) == FALLBACK:
            return _Relay(
                FALLBACK,
                s.smtp_fallback_host,
                s.smtp_fallback_port,
                s.smtp_fallback_username,
                s.smtp_fallback_password,
                s.smtp_fallback_starttls,
            )
        return _Relay(PRIMARY, s.smtp_host, s.smtp_port, s.smtp_username, s.smtp_password, s.smtp_starttls)

    @activity.defn(name="send_email")
    async def send_email(self, email: EmailMessage) -> DeliveryReceipt:
        return await self.deliver(email, email.context.job_attempt(activity.info().attempt), email.context.max_attempts)

    async def deliver(self, email: EmailMessage, attempt: int = 1, max_attempts: int = 1) -> DeliveryReceipt:
        """Send one message as the job's attempt `attempt` of `max_attempts` (the activity's work; a
        batch's slices call it per item); the last of two or more goes to the fallback relay, if any."""
        s = self.settings
        relay = self._relay(attempt, max_attempts)
        try:
            mime = build_message(s, email)
        except ValueError as exc:
            # The same message would be refused on every attempt (the API refuses what causes this).
            raise ApplicationError(
                f"the email cannot be built: {exc}", type="InvalidEmail", non_retryable=True
            ) from exc
        if relay.provider == FALLBACK:
            log_event("attempt.fallback", job_id=email.idempotency_key, channel="email", attempt=attempt)
        try:
            _refused, answer = await self.sessions.send(mime, relay)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _smtp_failure(exc.recipients[0].code, exc.recipients[0].message, relay.name) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _smtp_failure(exc.code, exc.message, relay.name) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Connection refused, timeouts: retried. On the primary they are raised as they are.
            if relay.provider == FALLBACK:
                raise unreachable(relay.name, exc) from exc
            raise
        # A plain str: the header object carries its parse tree, which Temporal's converter deep-copied
        # (dataclasses.asdict) for every item of a slice's result, some 8% of a batch worker's CPU.
        return DeliveryReceipt(
            summary=f"SMTP {answer}", provider_id=message_id(email.idempotency_key), provider=relay.provider
        )


class SmtpSessions:
    """SMTP sessions kept open between messages, per relay, for every email a worker sends (a job's
    and a batch's items): a message then costs MAIL, RCPT and DATA on a session already connected
    and greeted (EHLO, STARTTLS, AUTH), not a connection of its own. A session carries one message
    at a time, at most `messages` in all (relays cap messages per connection), and is reused only
    within `idle_seconds` of its last message (0: a connection per message); one the server has
    closed meanwhile is replaced by a new one before the message goes out."""

    def __init__(
        self, local_hostname: str, timeout: float, keep: int = 100, idle_seconds: float = 30, messages: int = 100
    ) -> None:
        self.local_hostname, self.timeout, self.keep = local_hostname, timeout, keep
        self.idle_seconds, self.messages = idle_seconds, messages
        self._idle: dict[_Relay, list[_Session]] = {}

    async def send(self, mime: MimeMessage, relay: _Relay) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        # The envelope from the headers already parsed (send_message would parse them again).
        envelope = {"sender": mime["From"].addresses[0].addr_spec, "recipients": envelope_recipients(mime)}
        idle = self._idle.setdefault(relay, [])
        while idle:
            session = idle.pop()
            if not session.smtp.is_connected or self._stale(session):
                session.smtp.close()
                continue
            try:
                # The server may have dropped an idle session, or be closing it (421): nothing was
                # accepted then, so the message goes out on another one.
                return self._kept(relay, session, await session.smtp.send_message(mime, **envelope))
            except aiosmtplib.SMTPServerDisconnected:
                session.smtp.close()
            except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as exc:
                if not _closing(exc):
                    self._kept(relay, session, None)  # refused, and the envelope reset: the session is fine
                    raise
                session.smtp.close()
            except BaseException:
                session.smtp.close()
                raise
        session = _Session(aiosmtplib.SMTP(**relay.connection(self.timeout, self.local_hostname)))
        await session.smtp.connect()
        try:
            return self._kept(relay, session, await session.smtp.send_message(mime, **envelope))
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException):
            self._kept(relay, session, None)
            raise
        except BaseException:
            session.smtp.close()
            raise

    def _stale(self, session: _Session) -> bool:
        return time.monotonic() - session.idle_since > self.idle_seconds

    def _kept(self, relay: _Relay, session: _Session, result: _Result) -> _Result:
        idle = self._idle.setdefault(relay, [])
        # The oldest idle sessions first: closed once past idle_seconds rather than left open unused.
        while idle and self._stale(idle[0]):
            idle.pop(0).smtp.close()
        session.sent += 1
        if session.smtp.is_connected and session.sent < self.messages and self.idle_seconds and len(idle) < self.keep:
            session.idle_since = time.monotonic()
            idle.append(session)
        else:
            session.smtp.close()  # without QUIT: a round trip for nothing the message depends on
        return result


def _closing(exc: aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPResponseException) -> bool:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(refusal.code == CLOSING for refusal in exc.recipients)
    return exc.code == CLOSING


@dataclass
class _Session:
    smtp: aiosmtplib.SMTP
    sent: int = 0
    idle_since: float = 0.0


@dataclass(frozen=True)
class _Relay:
    provider: Provider
    host: str
    port: int
    username: str | None
    password: str | None
    starttls: bool

    @property
    def name(self) -> str:
        return "fallback SMTP server" if self.provider == FALLBACK else "SMTP server"

    def connection(self, timeout: float, local_hostname: str) -> dict[str, Any]:
        """aiosmtplib's connection options for this relay: one message (send) and a kept session (SMTP)."""
        return {
            "hostname": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "start_tls": self.starttls,
            "timeout": timeout,
            "local_hostname": local_hostname,
        }


def _smtp_failure(code: int, text: str, what: str = "SMTP server") -> ApplicationError:
    # 5xx is the server's final word on this message (unknown mailbox, policy); 4xx is transient.
    detail = FailureDetail(status_code=code, response_excerpt=text[:512])
    return ApplicationError(
        f"{what} answered {code} {text}", detail, type="SmtpRejected", non_retryable=500 <= code < 600
    )
