"""The local webhook receiver: answers every POST with 200 and remembers what it got.

A ThreadingHTTPServer speaking HTTP/1.0, so every delivery (baseline and Herald alike) opens
its own TCP connection. It records the `webhook-id` header, the body and the headers, so the
driver can count deliveries per job and check Herald's signatures after the timed window.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = b'{"ok":true}'


@dataclass
class Delivery:
    webhook_id: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._got: list[Delivery] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver._got.append(Delivery(headers.get("webhook-id", ""), headers, body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(ANSWER)))
                self.end_headers()
                self.wfile.write(ANSWER)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def take(self) -> list[Delivery]:
        """Everything received since the last take()."""
        with self._lock:
            got, self._got = self._got, []
        return got

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def check_deliveries(got: list[Delivery], expected_ids: set[str]) -> dict:
    """Exactly one delivery per expected job, nothing else."""
    counts = Counter(d.webhook_id for d in got)
    return {
        "received": len(got),
        "missing": sorted(expected_ids - counts.keys()),
        "duplicated": sorted(i for i, n in counts.items() if n > 1 and i in expected_ids),
        "unexpected": sorted(i for i in counts if i not in expected_ids),
    }

