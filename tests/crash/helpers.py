"""Helpers for the crash tests: the scripted receiver at the far edge, and waiting for jobs to end."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

API_KEY = "crash-test-key"
SMS_TOKEN = "crash-sms-token"
# The default. (A shorter one would not finish a job much sooner: the workflow task that follows
# the retried attempt goes to the dead worker's sticky queue and waits there up to 10 s, unless
# that queue has had no poll for about 10 s by then.)
HEARTBEAT_TIMEOUT_S = 10


# ---- the far edge: a receiver answering each path from its own script ----------------------
@dataclass
class Step:
    status: int = 200
    delay_s: float = 0  # answer this late (after the release, when held)
    hold: bool = False  # answer only once released (the attempt stays in flight meanwhile)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered_at: float | None = None  # when the answer went out (None: not yet, or never)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Each path answers from its script in order (then its last step forever); records every request."""

    scripts: dict[str, list[Step]] = field(default_factory=dict)
    received: list[Request] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def script(self, path: str, *steps: Step) -> str:
        self.scripts[path] = list(steps)
        return self.url + path

    def requests_to(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        request = Request(handler.path, {k.lower(): v for k, v in handler.headers.items()}, body, time.monotonic())
        with self._lock:
            seen = sum(1 for r in self.received if r.path == handler.path)
            self.received.append(request)
            script = self.scripts.get(handler.path) or [Step()]
            step = script[min(seen, len(script) - 1)]
        if step.hold:
            self.released.wait(60)
        time.sleep(step.delay_s)
        payload = json.dumps({"id": f"r-{seen}"}).encode()
        try:
            handler.send_response(step.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
            request.answered_at = time.monotonic()
        except OSError:
            pass  # the sender is gone (a killed worker)


FINAL = {"completed", "failed", "cancelled"}


async def eventually(what: str, probe, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        if result := await probe():
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.1)


async def final(api: httpx.AsyncClient, job_id: str, timeout: float = 40) -> dict:
    async def probe():
        body = (await api.get(f"/jobs/{job_id}/status")).json()
        return body if body.get("status") in FINAL else None

    return await eventually(f"{job_id} final", probe, timeout)


async def final_since(api: httpx.AsyncClient, job_id: str, since: float) -> tuple[dict, float]:
    state = await final(api, job_id)
    return state, time.monotonic() - since


def arrived(receiver: Receiver, path: str, count: int):
    async def probe():
        return len(receiver.requests_to(path)) >= count

    return probe
