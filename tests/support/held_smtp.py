"""Holding a digest's email at the dev SMTP sink (devstack/smtp_sink.py), so a test can act while the digest's
send activity is in flight."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from devstack.smtp_sink import SmtpSink


class HeldDigestEmails:
    """Holds every digest email (Message-ID `<digest-…@herald>`) at the sink's DATA until `go` is set;
    `arrived` says one got that far."""

    def __init__(self, sink: SmtpSink) -> None:
        self.arrived, self.go = threading.Event(), threading.Event()
        original = sink.handler.handle_DATA

        async def handle_data(server: Any, session: Any, envelope: Any) -> str:
            if b"message-id: <digest-" in (envelope.original_content or b"").lower():
                self.arrived.set()
                while not self.go.is_set():  # noqa: ASYNC110 - the test sets it from its own thread
                    await asyncio.sleep(0.02)
            return await original(server, session, envelope)

        sink.handler.handle_DATA = handle_data  # type: ignore[method-assign]
