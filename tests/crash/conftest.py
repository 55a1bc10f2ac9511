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
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
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
from tests.crash.helpers import API_KEY, HEARTBEAT_TIMEOUT_S, SMS_TOKEN, Receiver
from tests.support.processes import start_logged
from tests.support.temporal import ENCRYPTION_KEY, WEBHOOK_SECRET

WORKER_START_TIMEOUT = 60


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
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


def worker_environment(
    dev_env: WorkflowEnvironment, data_dir: Path, receiver: Receiver, **extra: str
) -> dict[str, str]:
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
        HERALD_TEMP_DIR=str(data_dir / "tmp"),
        HERALD_LOG_DIR=str(data_dir / "logs"),
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
        process = start_logged("worker", env, log_path)
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
    app = create_app(settings)
    # With its lifespan, as served: its intake worker takes the SMS quota updates (api/core/intake.py).
    async with app.router.lifespan_context(app), api_client(app, headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c
