"""Real worker processes (`python -m worker`, as deployed) against one local Temporal dev server,
killed or stopped in the middle of sends, with a scripted receiver at the far edge.

The jobs come in through the real API app (in process, over ASGI) with the same settings as the
workers, so they carry what the API gives every job (the heartbeat timeout among it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from common.settings import Settings
from tests.api.helpers import address_of, api_client, dev_server
from tests.support.temporal import ENCRYPTION_KEY, WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "crash-test-key"
SMS_TOKEN = "crash-sms-token"
# The default. (A shorter one would not finish a job much sooner: the workflow task that follows
# the retried attempt goes to the dead worker's sticky queue and waits there up to 10 s, unless
# that queue has had no poll for about 10 s by then.)
HEARTBEAT_TIMEOUT_S = 10
WORKER_START_TIMEOUT = 60


# ---- the far edge: a receiver answering each path from its own script ----------------------
@dataclass
class Step:
    status: int = 200
    delay_s: float = 0  # answer this late
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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.answer(self)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        # A batch sends its items concurrently: the default backlog of 5 resets connections.
        request_queue_size = 256

    server = Server(("127.0.0.1", 0), Handler)
    got.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        got.released.set()
        server.shutdown()
        server.server_close()


# ---- Temporal, the API, the worker processes ------------------------------------------------
@pytest_asyncio.fixture(scope="package")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as env:
        yield env


def worker_environment(dev_env: WorkflowEnvironment, data_dir: Path, receiver: Receiver,
                       **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(
        PYTHONUNBUFFERED="1",
        HERALD_TEMPORAL_ADDRESS=address_of(dev_env),
        HERALD_DATA_DIR=str(data_dir),
        HERALD_API_KEYS=API_KEY,
        HERALD_WEBHOOK_SECRET=WEBHOOK_SECRET,
        HERALD_ENCRYPTION_KEY=ENCRYPTION_KEY,
        HERALD_WEBHOOK_ALLOW_HOSTS="127.0.0.1/8",
        HERALD_SMS_GATEWAY_URL=receiver.url + "/sms",
        HERALD_SMS_GATEWAY_TOKEN=SMS_TOKEN,
        HERALD_SEND_HEARTBEAT_TIMEOUT_SECONDS=str(HEARTBEAT_TIMEOUT_S),
        HERALD_WORKER_METRICS_PORT="0",
        HERALD_TEMP_DIR=str(data_dir / "tmp"), HERALD_LOG_DIR=str(data_dir / "logs"),
        HERALD_SESSION_DIR=str(data_dir / "sessions"),
        HERALD_SMS_PER_HOUR="100000",  # many SMS to one number: throttling is not what is tested
    )
    env.update(extra)
    return env


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict]:
        lines = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines


@pytest.fixture
def start_worker(dev_env, tmp_path, receiver) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `python -m worker` (HERALD_* overrides as keyword arguments); it is polling on return."""
    started: list[WorkerProcess] = []

    def start(**extra: str) -> WorkerProcess:
        n = len(started) + 1
        log_path = tmp_path / f"worker-{n}.log"
        env = worker_environment(dev_env, tmp_path / "data", receiver, **extra)
        with log_path.open("wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env,
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        worker = WorkerProcess(process, log_path)
        started.append(worker)
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while "worker polling" not in worker.log():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker {n} did not start (exit {process.poll()}):\n{worker.log()}")
            time.sleep(0.1)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGKILL)
            worker.process.wait()


@pytest.fixture
def settings(dev_env, tmp_path, receiver) -> Settings:
    """The API's settings: the same environment the workers get."""
    env = worker_environment(dev_env, tmp_path / "data", receiver)
    return Settings(**{k.removeprefix("HERALD_").lower(): v for k, v in env.items() if k.startswith("HERALD_")})


@pytest_asyncio.fixture
async def api(settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(create_app(settings), headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client
