"""`python -m bench.delayed`: the worker's memory with 10,000 delayed jobs parked on their timers.

Starts a dev server the way `make run` does (a SQLite file, tuned_args) and Herald's real worker
process (`python -m worker`, metrics off), reads its idle RSS (VmRSS of /proc/<pid>/status) once
start-up has settled, then starts N delayed email jobs (delay 1 h, through api.jobs.starter, at
most 64 starts in flight). Each job's first workflow task runs on the worker and parks on its
timer. Once a sample of the jobs (every 50th and the last 50 started) all have their timer in
their history, the worker has run every first task; the bench then waits a few seconds and
reads the RSS again. It reports idle, peak (sampled every 0.25 s throughout) and final RSS, and
peak and final as a ratio of idle (the target: within 1.5x).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.jobs.starter import start_job
from bench.procs import find_child
from bench.report import write_figures
from common.jobs import email_job
from common.models import LEAN_LIFECYCLE_INPUT, JobSpec
from common.runtime import exit_skipping_teardown
from common.settings import Settings
from common.temporal import client_for
from devstack.temporal_server import TEMPORAL_BIN, tuned_args

ROOT = Path(__file__).resolve().parents[1]
DELAY_MS = 3600 * 1000


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class RssSampler:
    def __init__(self, pid: int, period: float = 0.25) -> None:
        self.pid, self.period, self.peak = pid, period, 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mib(self.pid))
            await asyncio.sleep(self.period)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task:
            self._task.cancel()


def start_worker(address: str, tmp: Path, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env |= {
        "HERALD_TEMPORAL_ADDRESS": address,
        "HERALD_WORKER_METRICS_PORT": "0",
        "HERALD_DATA_DIR": str(tmp),
        "HERALD_TEMP_DIR": str(tmp / "tmp"),
        "HERALD_LOG_DIR": str(tmp / "logs"),
        "HERALD_SESSION_DIR": str(tmp / "sessions"),
        "HERALD_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
    } | extra_env
    log = open(tmp / "worker.log", "w")  # noqa: SIM115 - the process outlives this function
    return subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


async def wait_polling(tmp: Path, worker: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited: {(tmp / 'worker.log').read_text()[-2000:]}")
        if "worker polling" in (tmp / "worker.log").read_text():
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the worker did not start polling")


async def settle_rss(pid: int, seconds: float) -> float:
    """The RSS once it has stopped moving: the last of a few readings a second apart."""
    readings = []
    for _ in range(int(seconds)):
        readings.append(rss_mib(pid))
        await asyncio.sleep(1)
    return readings[-1]


async def start_all(client: Client, count: int, concurrency: int = 64) -> list[str]:
    gate = asyncio.Semaphore(concurrency)
    ids = [f"email-delayed{n:05d}-{uuid.uuid4().hex[:6]}" for n in range(count)]
    created = datetime.now(UTC).isoformat()

    async def one(job_id: str) -> None:
        spec = JobSpec(
            job_id=job_id,
            kind="email",
            family="jobs",
            created_at=created,
            delay_ms=DELAY_MS,
            lifecycle=LEAN_LIFECYCLE_INPUT,
        )
        async with gate:
            await start_job(client, email_job(spec, "parked@example.com", "bench", "a delayed job"))

    await asyncio.gather(*(one(i) for i in ids))
    return ids


async def parked(client: Client, job_id: str) -> bool:
    async for event in client.get_workflow_handle(job_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            return True
    return False


async def wait_parked(client: Client, ids: list[str], timeout: float) -> float:
    sample = sorted(set(ids[::50] + ids[-50:]))
    started, end = time.monotonic(), time.monotonic() + timeout
    while sample and time.monotonic() < end:
        done = await asyncio.gather(*(parked(client, i) for i in sample))
        sample = [i for i, ok in zip(sample, done, strict=True) if not ok]
        if sample:
            await asyncio.sleep(1)
    if sample:
        raise RuntimeError(f"{len(sample)} sampled jobs still not parked on their timer")
    return time.monotonic() - started


async def main(count: int, out: Path, extra_env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="herald-bench-delayed-") as tmp_name:
        tmp = Path(tmp_name)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(TEMPORAL_BIN),
            dev_server_database_filename=str(tmp / "delayed.db"),
            dev_server_extra_args=tuned_args(persistent=True),
        )
        key = base64.b64encode(secrets.token_bytes(32)).decode()  # the payload codec's, for the worker and here
        worker = start_worker(
            env.client.service_client.config.target_host, tmp, {"HERALD_ENCRYPTION_KEY": key} | extra_env
        )
        sampler = RssSampler(worker.pid)
        server = find_child("temporal")
        try:
            await wait_polling(tmp, worker)
            idle = await settle_rss(worker.pid, 10)
            server_before = (rss_mib(server) if server else None), _disk_mib(tmp)
            sampler.start()
            t0 = time.monotonic()
            ids = await start_all(client_for(env.client, Settings(encryption_key=key)), count)
            start_s = time.monotonic() - t0
            await wait_parked(env.client, ids, timeout=300)
            parked_s = time.monotonic() - t0
            final = await settle_rss(worker.pid, 10)
            server_after = (rss_mib(server) if server else None), _disk_mib(tmp)
            sampler.stop()
            peak = max(sampler.peak, final)
        finally:
            sampler.stop()
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
            await env.shutdown()
    result = {
        "delayed_jobs": count,
        "worker_env": extra_env,
        "start_seconds": round(start_s, 1),
        "all_parked_seconds": round(parked_s, 1),
        "idle_rss_mib": round(idle, 1),
        "peak_rss_mib": round(peak, 1),
        "final_rss_mib": round(final, 1),
        "peak_ratio": round(peak / idle, 2),
        "final_ratio": round(final / idle, 2),
        # The dev server's side: its RSS and its SQLite files (the database and its WAL), per 10,000.
        "server_rss_mib": {"before": _r(server_before[0]), "after": _r(server_after[0])},
        "server_disk_mib": {"before": _r(server_before[1]), "after": _r(server_after[1])},
        "server_disk_mib_per_10k": _r((server_after[1] - server_before[1]) * 10_000 / count),
        "server_rss_mib_per_10k": (
            _r((server_after[0] - server_before[0]) * 10_000 / count)
            if server_after[0] is not None and server_before[0] is not None
            else None
        ),
    }
    return write_figures(out, result)


def _disk_mib(folder: Path) -> float:
    """The dev server's SQLite files (delayed.db, its -wal and -shm)."""
    return sum(f.stat().st_size for f in folder.glob("delayed.db*")) / 2**20


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path(".data/bench-delayed.json"))
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="HERALD_NAME=VALUE",
        help="an extra variable for the worker, e.g. HERALD_WORKER_MAX_CACHED_WORKFLOWS=1000",
    )
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.worker_env)
    print(json.dumps(asyncio.run(main(args.jobs, args.out, extra)), indent=2))
    exit_skipping_teardown(0)
