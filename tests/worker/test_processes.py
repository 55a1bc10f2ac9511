"""HERALD_WORKER_PROCESSES=2 with real processes: `python -m worker` runs two worker processes (itself and
a child it starts), both take a batch's slices, both serve metrics (on the port and the port + 1);
SIGTERM drains both and the worker exits 0; a child killed with SIGKILL makes the worker stop and exit
1 (so a supervisor starts it again).

A dev server of the module's own, an SMTP sink in process, the API app in process (over ASGI) with the
workers' settings; which process ran a slice is the identity (`pid@host`) its ActivityTaskStarted event
records in the batch's history.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from common.settings import Settings
from devstack.smtp_sink import SmtpSink
from tests.api.helpers import AUTH, address_of, api_client, dev_server, mail_for, poll, process_environment
from tests.support.processes import (
    alive,
    descendants,
    fetch_when_served,
    kill_now,
    start_logged,
    survivors,
    until_logged,
)

WORKER_START_S = 90
GRACE_S = 3
# The parent's own drain, then its children's (begun at the same time): grace + 3 s margin + 2 s, and slack.
STOP_S = GRACE_S + 3 + 2 + 20
BATCH_ITEMS = 20
SLICE_ITEMS = 2


@pytest_asyncio.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as env:
        yield env


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with SmtpSink(tmp_path / "outbox", port=port) as smtp:
        yield smtp


def two_free_ports() -> int:
    """A port P with P and P + 1 both free (the parent's metrics and its child's)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b, contextlib.suppress(OSError):
                b.bind(("127.0.0.1", port + 1))
                return port
    raise AssertionError("no two free ports in a row")


def environment(env: WorkflowEnvironment, tmp_path: Path, sink: SmtpSink, **extra: str) -> dict[str, str]:
    environ = process_environment(address_of(env), tmp_path / "data", sink.port, "http://127.0.0.1:9/unused", 0)
    environ.update(
        HERALD_WORKER_PROCESSES="2",
        HERALD_WORKER_SHUTDOWN_GRACE_SECONDS=str(GRACE_S),
        HERALD_BATCH_SLICE_ITEMS=str(SLICE_ITEMS),
        **extra,
    )
    return environ


def settings_of(environ: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("HERALD_").lower(): v for k, v in environ.items() if k.startswith("HERALD_")})


async def started(environ: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, int]:
    """`python -m worker`, once both of its processes poll; the parent and the child's pid."""
    worker = start_logged("worker", environ, log_path)
    await until_logged(worker, log_path, "(worker process 1 of 2", WORKER_START_S)
    await until_logged(worker, log_path, "(worker process 2 of 2", WORKER_START_S)
    children = list(descendants(worker.pid))
    assert len(children) == 1, (children, log_path.read_text())
    return worker, children[0]


async def slice_identities(env: WorkflowEnvironment, batch_id: str) -> set[str]:
    history = await env.client.get_workflow_handle(batch_id).fetch_history()
    return {
        e.activity_task_started_event_attributes.identity
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    }


async def test_two_worker_processes_share_the_slices_and_sigterm_drains_both(dev_env, tmp_path, sink):
    metrics_port = two_free_ports()
    environ = environment(dev_env, tmp_path, sink, HERALD_WORKER_METRICS_PORT=str(metrics_port))
    log_path = tmp_path / "worker.log"
    worker, child = await started(environ, log_path)
    child_start = descendants(worker.pid)[child]
    try:
        for port in (metrics_port, metrics_port + 1):  # the parent's, the child's
            page = await asyncio.to_thread(fetch_when_served, f"http://127.0.0.1:{port}/metrics", worker, "metrics")
            assert "temporal_" in page
        identities: set[str] = set()
        job_ids: list[str] = []
        async with api_client(create_app(settings_of(environ)), headers=AUTH) as api:
            # Until both processes have run slices (which one takes a task is the server's choice).
            for round_ in range(8):
                batch_ids = []
                for n in range(4):
                    items = [
                        {"to": f"p{round_}-{n}-{i}@example.com", "subject": f"s {round_} {n} {i}", "body": "b"}
                        for i in range(BATCH_ITEMS)
                    ]
                    answer = await api.post("/notify/batch", json={"channel": "email", "items": items})
                    assert answer.status_code == 202, answer.text
                    batch_ids.append(answer.json()["batchId"])
                    job_ids += answer.json()["jobIds"]
                for batch_id in batch_ids:
                    await poll(api, f"/batches/{batch_id}", lambda body: body["done"], deadline_s=60)
                    identities |= await slice_identities(dev_env, batch_id)
                if {i.split("@")[0] for i in identities} >= {str(worker.pid), str(child)}:
                    break
        assert {i.split("@")[0] for i in identities} == {str(worker.pid), str(child)}, identities
        assert all(len(mail_for(sink.outbox, job_id)) == 1 for job_id in job_ids)

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=STOP_S) == 0, log_path.read_text()
        assert not await asyncio.to_thread(survivors, {child: child_start}, 5)  # the child is gone too
        log = log_path.read_text()
        assert log.count("worker drained") == 2 and log.count("worker stopped") == 2, log
    finally:
        kill_now(worker)
        if alive(child, child_start):
            kill_now_pid(child)


async def test_a_killed_child_stops_the_worker_with_exit_1(dev_env, tmp_path, sink):
    log_path = tmp_path / "worker.log"
    worker, child = await started(environment(dev_env, tmp_path, sink), log_path)
    try:
        kill_now_pid(child)
        assert worker.wait(timeout=STOP_S) == 1, log_path.read_text()
        log = log_path.read_text()
        assert "worker process 2 (pid" in log and "was killed by SIGKILL" in log, log
        assert "worker drained" in log, log  # the parent drained its own sends first
    finally:
        kill_now(worker)


def kill_now_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
