"""A real local HTTP server that answers from a script and records what it received.

Stands in for an SMS gateway or a webhook receiver at the far edge of the system.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0  # answer this late (a slow receiver)
    hold: threading.Event | None = None  # answer only once this is set (the send stays in flight)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """Answers with `script` in order, then with the last answer forever."""

    def __init__(self, script: list[Answer] | None = None) -> None:
        self.script = list(script or [Answer(200, {"ok": True})])
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(
                        Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
                    )
                    n = len(receiver.received) - 1
                    answer = receiver.script[min(n, len(receiver.script) - 1)]
                if answer.hold is not None:
                    answer.hold.wait(60)
                time.sleep(answer.delay_s)
                payload = (
                    b""
                    if answer.body is None
                    else (answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode())
                )
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    async def until_received(self, count: int, timeout_s: float = 2) -> None:
        """Wait until `count` requests have come in (they are in flight from then on, or answered)."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} requests came in {timeout_s} s"
            await asyncio.sleep(0.01)

    def __enter__(self) -> HttpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
