"""A dev SMTP server that stores every accepted message as an .eml file instead of sending it.

It speaks real SMTP (aiosmtpd), so Herald's email activity runs its production code path.
Like a real provider it refuses some recipients, so failure handling can be tried locally:

- any address at `reject.test`   → 550 5.1.1 mailbox unavailable (permanent)
- any address at `tempfail.test` → 451 4.3.0 try again later (transient)
- any address at `greylist.test` → 451 4.7.1 greylisted the first time it is tried, accepted after
  (as a greylisting server does: a sender that retries gets through)

AUTH is offered and any credentials are accepted, without TLS. Each accepted message is
saved as `<arrival ns>-<seq>-<pid>.eml` (LF line endings) in the outbox, with
`X-Envelope-From` and `X-Envelope-To` headers added on top.

Run it alone: python -m devstack.smtp_sink --host 127.0.0.1 --port 1025 --outbox .data/outbox
"""

from __future__ import annotations

import argparse
import email.policy
import itertools
import os
import signal
import threading
import time
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

REJECT_DOMAIN = "reject.test"
TEMPFAIL_DOMAIN = "tempfail.test"
GREYLIST_DOMAIN = "greylist.test"
REJECT_REPLY = "550 5.1.1 mailbox unavailable"
TEMPFAIL_REPLY = "451 4.3.0 try again later"
GREYLIST_REPLY = "451 4.7.1 greylisted, try again later"


def recipient_reply(address: str) -> str | None:
    """The refusal a recipient gets (a greylisted one: on its first try), or None when it is accepted."""
    domain = address.rpartition("@")[2].strip().rstrip(">").lower()
    if domain == REJECT_DOMAIN:
        return REJECT_REPLY
    if domain == TEMPFAIL_DOMAIN:
        return TEMPFAIL_REPLY
    if domain == GREYLIST_DOMAIN:
        return GREYLIST_REPLY  # the first time only (_OutboxHandler)
    return None


class _OutboxHandler:
    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        self._sequence = itertools.count()
        self._greylisted: set[str] = set()
        # Every refused recipient: (arrival ns, address, reply), oldest first.
        self.refusals: list[tuple[int, str, str]] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = recipient_reply(address)
        if refusal == GREYLIST_REPLY:
            # Greylisted once per address: a sender that tries again is let through.
            if address.lower() in self._greylisted:
                refusal = None
            self._greylisted.add(address.lower())
        if refusal:
            self.refusals.append((time.time_ns(), address, refusal))
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # Stored with local line endings, as a maildir would: bodies read back as sent.
        content = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        trace = (f"X-Envelope-From: <{envelope.mail_from}>\nX-Envelope-To: {', '.join(envelope.rcpt_tos)}\n").encode()
        self._save(trace + content)
        return "250 OK: message stored"

    def _save(self, data: bytes) -> Path:
        # Arrival time plus a counter: sorts by arrival and never collides within one sink.
        name = f"{time.time_ns():020d}-{next(self._sequence):06d}-{os.getpid()}"
        tmp = self.outbox / f".{name}.tmp"
        tmp.write_bytes(data)
        final = self.outbox / f"{name}.eml"
        os.replace(tmp, final)  # readers never see half a message
        return final


def _accept_any_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
) -> AuthResult:
    return AuthResult(success=True)


class SmtpSink:
    """The SMTP sink, runnable in-process (tests) with start()/stop()."""

    def __init__(self, outbox: Path, host: str = "127.0.0.1", port: int = 1025) -> None:
        self.outbox = Path(outbox)
        self.host = host
        self.port = port
        self._controller: Controller | None = None
        self.handler = _OutboxHandler(self.outbox)

    def start(self) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            server_hostname="herald-smtp-sink",
            enable_SMTPUTF8=True,
            authenticator=_accept_any_login,
            auth_require_tls=False,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def read_outbox(outbox: Path) -> list[EmailMessage]:
    """Every stored message, oldest first."""
    parser = BytesParser(policy=email.policy.default)
    return [parser.parsebytes(path.read_bytes()) for path in sorted(Path(outbox).glob("*.eml"))]


def serve_until_stopped(sink: SmtpSink, stop: threading.Event) -> None:
    """Keep the started `sink` serving until `stop` is set (SIGINT and SIGTERM set it too), then stop it."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        # Short waits: the main thread runs the signal handlers between them.
        while not stop.wait(0.5):
            pass
    finally:
        sink.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--outbox", type=Path, default=Path(".data/outbox"))
    args = parser.parse_args(argv)
    sink = SmtpSink(args.outbox, args.host, args.port)
    sink.start()
    print(f"SMTP sink on {args.host}:{args.port}, saving to {args.outbox}", flush=True)
    serve_until_stopped(sink, threading.Event())


if __name__ == "__main__":
    main()
