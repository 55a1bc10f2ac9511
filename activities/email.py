"""Send one email over SMTP."""

from __future__ import annotations

import re
import socket
from email.header import Header
from email.message import EmailMessage as MimeMessage
from email.policy import Policy
from email.utils import formatdate

import aiosmtplib
from temporalio import activity
from temporalio.exceptions import ApplicationError

from common.models import DeliveryReceipt, EmailMessage, FailureDetail
from common.settings import Settings


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


def build_message(settings: Settings, email: EmailMessage) -> MimeMessage:
    """The message as sent; a ValueError for a header value that is not one line."""
    mime = MimeMessage()
    mime["From"] = settings.email_from
    mime["To"] = _one_line("To", email.to)
    subject = _one_line("Subject", email.subject)
    mime["Subject"] = _EncodedSubject(subject) if "=?" in subject else subject
    mime["Date"] = formatdate(localtime=False)
    mime["Message-ID"] = message_id(email.idempotency_key)
    mime.set_content(email.body)
    return mime


class EmailActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The EHLO name, once: aiosmtplib would otherwise look it up (getfqdn, in a thread) per send.
        self.local_hostname = settings.smtp_local_hostname or socket.getfqdn()

    @activity.defn(name="send_email")
    async def send_email(self, email: EmailMessage) -> DeliveryReceipt:
        s = self.settings
        try:
            mime = build_message(s, email)
        except ValueError as exc:
            # The same message would be refused on every attempt (the API refuses what causes this).
            raise ApplicationError(f"the email cannot be built: {exc}", type="InvalidEmail",
                                   non_retryable=True) from exc
        try:
            errors, answer = await aiosmtplib.send(
                mime,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password,
                start_tls=s.smtp_starttls,
                timeout=s.smtp_timeout_seconds,
                local_hostname=self.local_hostname,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _smtp_failure(exc.recipients[0].code, exc.recipients[0].message) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _smtp_failure(exc.code, exc.message) from exc
        # Other errors (connection refused, timeouts) are raised as they are: Temporal retries them.
        return DeliveryReceipt(summary=f"SMTP {answer}", provider_id=mime["Message-ID"])


def _smtp_failure(code: int, text: str) -> ApplicationError:
    # 5xx is the server's final word on this message (unknown mailbox, policy); 4xx is transient.
    detail = FailureDetail(status_code=code, response_excerpt=text[:512])
    return ApplicationError(f"SMTP server answered {code} {text}", detail, type="SmtpRejected",
                            non_retryable=500 <= code < 600)
