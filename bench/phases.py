"""The benchmark's phases: the same N webhook-shaped jobs through bare Temporal, Herald, Herald's API.

Every phase gets a fresh worker process, a few untimed warm-up jobs, then N timed jobs with at
most `concurrency` starts in flight, then a few jobs one at a time (unloaded latency). A job's
latency runs from just before its start call (or its POST to the API) to the moment its
workflow result arrives at the driver; a phase's throughput is N over the time from the first
start to the last completion.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx
from standardwebhooks.webhooks import Webhook
from temporalio.client import Client

from api.job_starter import new_job_id, start_job, webhook_job
from bench.bare import TASK_QUEUE as BARE_QUEUE, BareWorkflow
from bench.bare_activity import BareInput
from bench.procs import ApiProcess, WorkerProcess, child_env, cpu_seconds, free_port, own_cpu_seconds
from bench.receiver import Receiver, check_deliveries
from common.models import STATE_MEMO_KEY, JobSpec, RetrySpec
from workflows.notification import NotificationWorkflow

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
API_KEY = "bench-key"

# submit(i) starts job i and returns its id and a coroutine factory that waits for its result.
Submit = Callable[[int], Awaitable[tuple[str, Callable[[], Awaitable[None]]]]]


@dataclass
class JobResult:
    index: int
    job_id: str | None
    issued: float            # perf_counter just before the start call / the POST
    started: float | None    # when the start call (or the 202) returned
    done: float | None       # when the result arrived
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.done is not None


@dataclass
class Context:
    client: Client
    address: str
    server_pid: int | None
    receiver: Receiver
    workdir: Path
    concurrency: int
    warmup: int
    serial: int
    job_timeout: float


@dataclass
class PhaseResult:
    name: str
    label: str
    jobs: list[JobResult] = field(default_factory=list)
    deliveries: dict = field(default_factory=dict)
    warmup: dict = field(default_factory=dict)
    verified: dict = field(default_factory=dict)
    usage: dict = field(default_factory=dict)
    serial: list[JobResult] = field(default_factory=list)
    serial_deliveries: dict = field(default_factory=dict)
    error: str | None = None


async def run_jobs(n: int, concurrency: int, submit: Submit, timeout: float) -> list[JobResult]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> JobResult:
        async with gate:
            issued = time.perf_counter()
            try:
                job_id, wait = await submit(i)
            except Exception as exc:  # noqa: BLE001 - a failed start is a result, not a crash
                return JobResult(i, None, issued, None, None, f"start failed: {exc!r}")
            started = time.perf_counter()
        try:
            await asyncio.wait_for(wait(), timeout)
        except Exception as exc:  # noqa: BLE001
            return JobResult(i, job_id, issued, started, None, f"not completed: {exc!r}")
        return JobResult(i, job_id, issued, started, time.perf_counter())

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def payload(i: int) -> dict:
    return {"event": "bench.ping", "n": i}


# ---- the three ways in -----------------------------------------------------------------------
def bare_submit(ctx: Context, tag: str) -> Submit:
    async def submit(i: int):
        job_id = f"bare-{tag}-{i}"
        handle = await ctx.client.start_workflow(
            BareWorkflow.run, BareInput(url=ctx.receiver.url, job_id=job_id, data=payload(i)),
            id=job_id, task_queue=BARE_QUEUE)

        async def wait() -> None:
            status = await handle.result()
            if status != 200:
                raise RuntimeError(f"activity answered {status}")
        return job_id, wait
    return submit


def _receipt_ok(receipt: Any) -> None:
    if getattr(receipt, "status_code", None) != 200:
        raise RuntimeError(f"unexpected receipt {receipt!r}")


def herald_submit(ctx: Context, tag: str) -> Submit:
    url = ctx.receiver.url

    async def submit(i: int):
        # Built like tests/support/temporal.job_spec, with the API's defaults for the rest.
        spec = JobSpec(job_id=new_job_id("webhook"), kind="webhook", family="notify",
                       created_at=datetime.now(timezone.utc).isoformat(), retry=RetrySpec(),
                       recipient=url)
        started = await start_job(ctx.client, webhook_job(spec, url, payload(i)))

        async def wait() -> None:
            _receipt_ok(await started.handle.result())
        return started.job_id, wait
    return submit


def api_submit(ctx: Context, http: httpx.AsyncClient) -> Submit:
    url = ctx.receiver.url

    async def submit(i: int):
        response = await http.post("/notify/webhook", json={"url": url, "data": payload(i)})
        if response.status_code != 202:
            raise RuntimeError(f"API answered {response.status_code}: {response.text[:200]}")
        job_id = response.json()["notificationId"]
        handle = ctx.client.get_workflow_handle_for(NotificationWorkflow.run, job_id)

        async def wait() -> None:
            _receipt_ok(await handle.result())
        return job_id, wait
    return submit


# ---- after the timed window: what Temporal and the receiver say --------------------------------
async def verify_herald_jobs(ctx: Context, jobs: list[JobResult], deliveries: list) -> dict:
    """Every job's memo says completed after one attempt; every delivery carries a valid signature."""
    gate = asyncio.Semaphore(ctx.concurrency)
    phases: dict[str, int] = {}
    extra_attempts = 0

    async def one(job_id: str) -> None:
        nonlocal extra_attempts
        async with gate:
            memo = await (await ctx.client.get_workflow_handle(job_id).describe()).memo()
        state = memo[STATE_MEMO_KEY]
        phases[state["phase"]] = phases.get(state["phase"], 0) + 1
        extra_attempts += max(0, state["attempts"] - 1)

    await asyncio.gather(*(one(j.job_id) for j in jobs if j.job_id))
    hook = Webhook(WEBHOOK_SECRET)
    bad_signatures = 0
    for d in deliveries:
        try:
            hook.verify(d.body, d.headers)
        except Exception:  # noqa: BLE001
            bad_signatures += 1
    return {"memo_phases": phases, "extra_attempts": extra_attempts,
            "signatures_checked": len(deliveries), "bad_signatures": bad_signatures}


# ---- one phase -------------------------------------------------------------------------------
def _snapshot(ctx: Context, extra_pids: dict[str, int]) -> dict:
    cpu = {"driver": own_cpu_seconds()}
    if ctx.server_pid:
        cpu["server"] = cpu_seconds(ctx.server_pid)
    for name, pid in extra_pids.items():
        cpu[name] = cpu_seconds(pid)
    return cpu


async def run_phase(ctx: Context, name: str, label: str, kind: str, n: int, via_api: bool = False) -> PhaseResult:
    result = PhaseResult(name=name, label=label)
    tag = uuid.uuid4().hex[:8]
    worker = WorkerProcess({"kind": kind, "address": ctx.address, "webhook_secret": WEBHOOK_SECRET,
                            "data_dir": str(ctx.workdir / f"{name}-data")},
                           ctx.workdir / f"{name}-worker.log")
    api: ApiProcess | None = None
    http: httpx.AsyncClient | None = None
    try:
        ready = await worker.start()
        pids = {"worker": worker.pid}
        if kind == "bare":
            submit = bare_submit(ctx, tag)
        elif not via_api:
            submit = herald_submit(ctx, tag)
        else:
            port = free_port()
            api = ApiProcess(child_env(
                api_keys=API_KEY, api_host="127.0.0.1", api_port=str(port), temporal_address=ctx.address,
                webhook_allow_hosts="127.0.0.1/8", webhook_secret=WEBHOOK_SECRET,
                data_dir=str(ctx.workdir / f"{name}-api-data")), ctx.workdir / f"{name}-api.log")
            await api.start(f"http://127.0.0.1:{port}/readyz")
            pids["api"] = api.pid
            http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     headers={"Authorization": f"Bearer {API_KEY}"},
                                     limits=httpx.Limits(max_connections=ctx.concurrency), timeout=30)
            submit = api_submit(ctx, http)

        # Untimed warm-up: imports, sandbox, connections, server caches.
        ctx.receiver.take()
        warm = await run_jobs(ctx.warmup, ctx.concurrency, submit, ctx.job_timeout)
        warm_ids = {j.job_id for j in warm if j.job_id}
        result.warmup = {"jobs": len(warm), "completed": sum(j.ok for j in warm),
                         **check_deliveries(ctx.receiver.take(), warm_ids)}

        before = await worker.usage()
        cpu_before = _snapshot(ctx, pids)
        result.jobs = await run_jobs(n, ctx.concurrency, submit, ctx.job_timeout)
        cpu_after = _snapshot(ctx, pids)
        after = await worker.usage()

        got = ctx.receiver.take()
        result.deliveries = check_deliveries(got, {j.job_id for j in result.jobs if j.job_id})

        # Unloaded latency: a few more jobs one at a time, with nothing else in flight.
        if ctx.serial:
            result.serial = await run_jobs(ctx.serial, 1, submit, ctx.job_timeout)
            result.serial_deliveries = check_deliveries(
                ctx.receiver.take(), {j.job_id for j in result.serial if j.job_id})
        if kind == "herald":
            result.verified = await verify_herald_jobs(ctx, result.jobs, got)
        result.usage = {
            "worker_ready": ready, "worker_before": before, "worker_after": after,
            "cpu_s": {k: cpu_after[k] - cpu_before[k] for k in cpu_after},
        }
        stopped = await worker.stop()
        result.usage["worker_stopped"] = stopped
    except Exception as exc:  # noqa: BLE001 - reported as a failed phase
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if http is not None:
            await http.aclose()
        if api is not None:
            await api.stop()
        if worker.proc is not None and worker.proc.returncode is None:
            worker.proc.kill()
        await worker.close()
    return result
