"""The benchmark's phases on one dev server: the naive email job, Herald through its HTTP API, paced load.

A load phase: a fresh worker process (and, for Herald, a fresh `python -m api`), untimed
warm-up jobs, then N timed jobs started with at most `concurrency` start calls (or POSTs) in
flight. Every job sends one email to the SMTP sink process, whose Subject carries a token
unique to the job; the sink reports each message's arrival, so the driver times deliveries
and counts them per job. The CPU window runs from the first start call until the server and
the worker are idle again after the last delivery (so it holds the jobs' completions too).
After the window: every job must have completed (bare: its workflow; Herald: GET
/jobs/{id}/status says "completed"), and every email must have arrived exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from bench.bare import TASK_QUEUE as BARE_QUEUE
from bench.bare import SendEmailWorkflow
from bench.bare_activity import EmailRequest
from bench.http_client import HttpError, LeanHttp, Response
from bench.procs import (
    ApiProcess,
    SinkProcess,
    WorkerProcess,
    child_env,
    cpu_seconds,
    kernel_thread_seconds,
    machine_busy_seconds,
    own_cpu_seconds,
    python_thread_seconds,
    server_storage_calls,
    storage_calls_per_job,
    thread_cpu_seconds,
)
from common.models import batch_chunk_id
from devstack.ports import free_port

API_KEY = "bench-key"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENCRYPTION_KEY = "YmVuY2gtcGF5bG9hZC1rZXktb2YtMzItYnl0ZXMhISE="  # the payload codec's, as in production
TO = "reader@example.com"
BODY = "Hello from the Herald benchmark.\n\nThis is one of many identical messages; only the subject differs.\n"
FINAL = {"completed", "failed", "cancelled"}


@dataclass
class Stack:
    """One dev server and what the phases share on it."""

    client: Client
    address: str
    server_pid: int | None
    sink: SinkProcess
    workdir: Path
    concurrency: int
    warmup: int
    job_timeout: float
    history_sample: int
    quiet_wait: float = 20
    # The dev server's Prometheus endpoint (`--metrics-port`): its storage calls per job.
    metrics_url: str | None = None
    # HERALD_* settings (lower-case names, without the prefix) for every Herald worker and API (`--herald-env`).
    herald_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Job:
    index: int
    subject: str
    job_id: str | None = None
    issued: float | None = None  # time.time() just before the start call / the POST
    accepted: float | None = None  # when it returned (202 for the API)
    error: str | None = None


Submit = Callable[[Job], Awaitable[str]]


def batch(n: int) -> tuple[list[Job], str]:
    """N jobs whose subjects share a prefix that no other batch's subjects start with."""
    prefix = f"bench {uuid.uuid4().hex[:10]}-"
    return [Job(i, f"{prefix}{i}") for i in range(n)], prefix


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _r(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


# ---- the ways in ------------------------------------------------------------------------------
def bare_submit(client: Client) -> Submit:
    async def submit(job: Job) -> str:
        job_id = f"email-{job.subject.split()[-1]}"
        await client.start_workflow(
            SendEmailWorkflow.run, EmailRequest(to=TO, subject=job.subject, body=BODY), id=job_id, task_queue=BARE_QUEUE
        )
        return job_id

    return submit


def api_submit(http: LeanHttp) -> Submit:
    async def submit(job: Job) -> str:
        response = await http.post("/jobs/email", {"to": TO, "subject": job.subject, "body": BODY})
        if response.status_code != 202:
            raise RuntimeError(f"API answered {response.status_code}: {response.text[:200]}")
        return response.json()["jobId"]

    return submit


def start_job_submit(client: Client) -> Submit:
    """Herald's start path without HTTP: api.jobs.starter.start_job(email_job(...)), as the API builds it."""
    from api.jobs.models import JobOptions
    from api.jobs.starter import job_spec, new_job_id, start_job
    from common.jobs import email_job
    from common.settings import Settings
    from common.temporal import client_for

    settings = Settings(encryption_key=ENCRYPTION_KEY)
    herald = client_for(client, settings)  # the API's converter: the input encrypted

    async def submit(job: Job) -> str:
        spec = job_spec(new_job_id("email"), "email", "jobs", JobOptions(), settings, TO, tenant=None)
        started = await start_job(herald, email_job(spec, TO, job.subject, BODY))
        return started.job_id

    return submit


async def start_all(jobs: list[Job], concurrency: int, submit: Submit) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Job) -> None:
        async with gate:
            job.issued = time.time()
            try:
                job.job_id = await submit(job)
            except Exception as exc:  # noqa: BLE001 - a failed start is a result, not a crash
                job.error = f"start failed: {exc!r}"[:300]
                return
            job.accepted = time.time()

    await asyncio.gather(*(one(j) for j in jobs))


# ---- after the window: did every job complete? ------------------------------------------------
async def bare_outcomes(client: Client, jobs: list[Job], concurrency: int, timeout: float) -> dict[str, dict]:
    """Each workflow's status and close time (waiting for any still running)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job_id: str) -> tuple[str, dict]:
        async with gate:
            handle = client.get_workflow_handle(job_id)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    d = await handle.describe()
                except Exception as exc:  # noqa: BLE001
                    return job_id, {"status": f"describe failed: {exc!r}"[:200]}
                if d.status != WorkflowExecutionStatus.RUNNING or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        status = (
            "completed"
            if d.status == WorkflowExecutionStatus.COMPLETED
            else (d.status.name.lower() if d.status else "?")
        )
        return job_id, {"status": status, "closed": d.close_time.timestamp() if d.close_time else None}

    return dict(await asyncio.gather(*(one(j.job_id) for j in jobs if j.job_id)))


async def herald_outcomes(
    client: Client, http: LeanHttp, jobs: list[Job], concurrency: int, timeout: float
) -> dict[str, dict]:
    """Each job's status as GET /jobs/{id}/status tells it (waiting for any not final yet), and, where
    the job is a workflow of the same id, its close time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job_id: str) -> tuple[str, dict]:
        async with gate:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    response = await http.get(f"/jobs/{job_id}/status")
                    status = (
                        response.json().get("status") if response.status_code == 200 else f"HTTP {response.status_code}"
                    )
                except (TimeoutError, HttpError, OSError, ValueError) as exc:
                    status = f"GET failed: {exc!r}"[:200]
                if status in FINAL or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            closed = None
            try:
                d = await client.get_workflow_handle(job_id).describe()
                closed = d.close_time.timestamp() if d.close_time else None
            except Exception:  # noqa: BLE001 - a job need not be a workflow of its id
                pass
        return job_id, {"status": status, "closed": closed}

    return dict(await asyncio.gather(*(one(j.job_id) for j in jobs if j.job_id)))


async def _histories(client: Client, ids: list[str]) -> tuple[dict[str, int], Counter, list[str]]:
    """Events in each of these workflows' histories, by id; the first one's events by type; the errors."""
    lengths: dict[str, int] = {}
    kinds: Counter = Counter()
    errors: list[str] = []
    for workflow_id in ids:
        try:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{workflow_id}: {exc!r}"[:200])
            continue
        lengths[workflow_id] = len(history.events)
        if len(lengths) == 1:
            for e in history.events:
                kinds[(e.WhichOneof("attributes") or "").removesuffix("_event_attributes")] += 1
    return lengths, kinds, errors


async def history_events(client: Client, jobs: list[Job], sample: int) -> dict:
    """Events in the history of a sample of the jobs' workflows (the workflow id is the job id)."""
    ids = [j.job_id for j in jobs if j.job_id]
    if not ids or sample <= 0:
        return {}
    step = max(1, len(ids) // sample)
    lengths, kinds, errors = await _histories(client, ids[::step][:sample])
    counts = list(lengths.values())
    if not counts:
        return {"sampled": 0, "errors": errors}
    return {
        "sampled": len(counts),
        "per_job": round(sum(counts) / len(counts), 1),
        "min": min(counts),
        "max": max(counts),
        "first_job_by_type": dict(kinds),
        "errors": errors,
    }


# ---- CPU --------------------------------------------------------------------------------------
def snapshot(pids: Mapping[str, int | Sequence[int] | None]) -> dict[str, float]:
    """CPU seconds so far: the driver's, each named process's (or named processes' together: the
    worker's), the kernel threads' ("kernel") and ("machine") the whole machine's."""
    cpu = {"machine": machine_busy_seconds(), "kernel": kernel_thread_seconds(), "driver": own_cpu_seconds()}
    for name, pid in pids.items():
        for one in [pid] if isinstance(pid, int) else pid or []:
            with contextlib.suppress(OSError):  # (gone meanwhile)
                cpu[name] = cpu.get(name, 0.0) + cpu_seconds(one)
    return cpu


async def quiesce(pids: list[int | None], window: float = 0.2, busy: float = 0.15, limit: float = 10) -> list:
    """Until these processes together used under `busy` of a core in two windows in a row.
    Returns each window's cores busy per process (the tail after the last delivery)."""
    live = [p for p in pids if p]
    deadline = time.monotonic() + limit
    calm = 0
    trace = []
    last = [cpu_seconds(p) for p in live]
    while calm < 2 and time.monotonic() < deadline:
        await asyncio.sleep(window)
        now = [cpu_seconds(p) for p in live]
        trace.append([round((b - a) / window, 2) for a, b in zip(last, now)])
        calm = calm + 1 if sum(now) - sum(last) < busy * window else 0
        last = now
    return trace


async def wait_quiet(limit: float, window: float = 0.5, busy: float = 0.3) -> float:
    """Wait (at most `limit` s) until the whole machine used under `busy` cores for a `window`: other
    people's work on the shared cores would land in the figures. Returns the seconds waited."""
    began = time.monotonic()
    last = machine_busy_seconds()
    while time.monotonic() - began < limit:
        await asyncio.sleep(window)
        now = machine_busy_seconds()
        if now - last < busy * window:
            break
        last = now
    return round(time.monotonic() - began, 1)


# ---- one load phase ---------------------------------------------------------------------------
@dataclass
class Running:
    """The worker (and API) processes of a phase, kept for the paced phase that may follow."""

    worker: WorkerProcess
    ready: dict = field(default_factory=dict)  # the worker's usage once polling
    api: ApiProcess | None = None
    http: LeanHttp | None = None
    api_url: str | None = None
    # More worker processes of the phase (`--worker-processes`, as HERALD_WORKER_PROCESSES runs them).
    more_workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def worker_pids(self) -> list[int]:
        return [w.pid for w in [self.worker, *self.more_workers] if w.proc is not None]

    async def close(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self.api is not None:
            await self.api.stop()
        for w in [self.worker, *self.more_workers]:
            if w.proc is not None and w.proc.returncode is None:
                try:
                    await w.stop()
                except Exception:  # noqa: BLE001
                    w.proc.kill()
            await w.close()


def herald_env(stack: Stack, data: Path, **extra: str) -> dict[str, str]:
    """HERALD_* as `make run` hands them to its children (dev mode), pointed at this run's server and sink."""
    return child_env(
        dev_mode="true",
        temporal_address=stack.address,
        data_dir=str(data),
        smtp_host="127.0.0.1",
        smtp_port=str(stack.sink.port),
        webhook_secret=WEBHOOK_SECRET,
        encryption_key=ENCRYPTION_KEY,
        webhook_allow_hosts="127.0.0.1/8,::1/128,localhost",
        temp_dir=str(data / "tmp"),
        log_dir=str(data / "logs"),
        session_dir=str(data / "sessions"),
        **extra,
    )


async def start_processes(
    stack: Stack,
    name: str,
    kind: str,
    with_api: bool,
    *,
    api_keys: str = API_KEY,
    worker_settings: Mapping[str, str] | None = None,
    start_worker: bool = True,
    worker_processes: int = 1,
) -> Running:
    """The phase's worker (with `worker_settings` as HERALD_* beside the usual ones, and those of
    `--herald-env`) and, `with_api`, its API with `api_keys` as HERALD_API_KEYS. `start_worker=False`: the
    worker is left for the caller to start (`running.ready = await running.worker.start()`), so jobs can
    queue up in Temporal first. `worker_processes` above 1: as many Herald worker processes, each with
    all of Herald's Workers, as `python -m worker` runs them with HERALD_WORKER_PROCESSES."""
    data = stack.workdir / f"{name}-data"
    if kind == "bare":
        env = child_env()
        env.update(BENCH_SMTP_HOST="127.0.0.1", BENCH_SMTP_PORT=str(stack.sink.port))
    else:
        env = herald_env(stack, data, **{**stack.herald_env, **dict(worker_settings or {})})
    worker = WorkerProcess({"kind": kind, "address": stack.address}, env, stack.workdir / f"{name}-worker.log")
    running = Running(worker)
    if kind != "bare":
        running.more_workers = [
            WorkerProcess({"kind": kind, "address": stack.address}, env, stack.workdir / f"{name}-worker-{k}.log")
            for k in range(2, worker_processes + 1)
        ]
    try:
        if start_worker:
            running.ready, *_ = await asyncio.gather(worker.start(), *(w.start() for w in running.more_workers))
        if with_api:
            port = free_port()
            running.api = ApiProcess(
                herald_env(
                    stack,
                    stack.workdir / f"{name}-api-data",
                    api_keys=api_keys,
                    api_host="127.0.0.1",
                    api_port=str(port),
                    **stack.herald_env,
                ),
                stack.workdir / f"{name}-api.log",
            )
            running.api_url = f"http://127.0.0.1:{port}"
            await running.api.start(f"{running.api_url}/readyz")
            running.http = LeanHttp(running.api_url, {"Authorization": f"Bearer {API_KEY}"}, stack.concurrency)
    except BaseException:
        await running.close()
        raise
    return running


def _deliveries(sink: SinkProcess, jobs: list[Job], prefix: str) -> dict:
    """Exactly one email per job, none for anything else of this prefix."""
    counts = sink.count_of(prefix)
    wanted = {j.subject for j in jobs}
    return {
        "received": sum(counts.values()),
        "missing": sorted(s for s in wanted if s not in counts),
        "duplicated": sorted(s for s, n in counts.items() if n > 1),
        "unexpected": sorted(s for s in counts if s not in wanted),
    }


def _delivery_problems(what: str, d: dict, n: int) -> list[str]:
    if d["received"] == n and not (d["missing"] or d["duplicated"] or d["unexpected"]):
        return []
    return [
        f"{what}: the sink got {d['received']} emails for {n} jobs ({len(d['missing'])} missing, "
        f"{len(d['duplicated'])} duplicated, {len(d['unexpected'])} unexpected; e.g. "
        f"{(d['missing'] + d['duplicated'] + d['unexpected'])[:3]})"
    ]


async def run_load(
    stack: Stack,
    running: Running,
    name: str,
    label: str,
    kind: str,
    n: int,
    submit: Submit | None,
    starter: Starter | None = None,
) -> dict[str, Any]:
    """Warm-up, then N timed jobs; figures and checks as a dict. The jobs are started one by one
    through `submit` (`concurrency` at a time), or all at once by `starter` (batches)."""
    if starter is None:
        assert submit is not None

        async def starter(jobs: list[Job]) -> None:
            await start_all(jobs, stack.concurrency, submit)

    sink = stack.sink
    worker_pids = running.worker_pids
    pids = {
        "server": stack.server_pid,
        "worker": worker_pids,
        "sink": sink.pid,
        "api": running.api.pid if running.api else None,
    }
    busy_pids: list[int | None] = [stack.server_pid, *worker_pids]
    out: dict[str, Any] = {"name": name, "label": label, "kind": kind, "jobs": n, "problems": []}
    problems: list[str] = out["problems"]

    # Untimed warm-up: imports, the workflow sandbox, connections, server caches.
    warm, warm_prefix = batch(stack.warmup)
    await starter(warm)
    await sink.wait_for({j.subject for j in warm if not j.error}, stack.job_timeout)
    await quiesce(busy_pids)
    wd = _deliveries(sink, warm, warm_prefix)
    problems += [f"warm-up: {j.error}" for j in warm if j.error][:3]
    problems += _delivery_problems("warm-up", wd, len(warm))

    # The timed jobs.
    out["waited_for_quiet_s"] = await wait_quiet(stack.quiet_wait)
    jobs, prefix = batch(n)
    before = await running.worker.usage()
    threads0 = [thread_cpu_seconds(pid) for pid in worker_pids]
    storage0 = await server_storage_calls(stack.metrics_url)
    cpu0 = snapshot(pids)
    await starter(jobs)
    started = [j for j in jobs if not j.error]
    all_in = await sink.wait_for({j.subject for j in started}, stack.job_timeout)
    out["tail_cores"] = await quiesce(busy_pids)  # [server, worker(s)] per 0.2 s after the last delivery
    cpu1 = snapshot(pids)
    window_end = time.time()
    threads1 = [thread_cpu_seconds(pid) for pid in worker_pids]
    after = await running.worker.usage()
    # Last: it waits for the server to publish its counters, time the readings above must not include.
    storage1 = await server_storage_calls(stack.metrics_url)

    # After the window: outcomes, history sample, then the sink's final counts.
    if kind == "bare":
        outcomes = await bare_outcomes(stack.client, jobs, stack.concurrency, stack.job_timeout)
    elif kind == "batch":
        assert running.http is not None
        outcomes = await batch_outcomes(running.http, jobs, stack.concurrency, stack.job_timeout)
    else:
        assert running.http is not None
        outcomes = await herald_outcomes(stack.client, running.http, jobs, stack.concurrency, stack.job_timeout)
    if kind == "batch":
        history = await batch_history_events(stack.client, started, stack.history_sample)
    else:
        history = await history_events(stack.client, started, stack.history_sample)
    await asyncio.sleep(0.5)  # a late duplicate would show now
    d = _deliveries(sink, jobs, prefix)

    start_errors = [j.error for j in jobs if j.error]
    if start_errors:
        problems.append(f"{len(start_errors)} of {n} start calls failed, e.g. {start_errors[0]}")
    if not all_in:
        problems.append("deliveries stalled: nothing arrived for --job-timeout seconds")
    problems += _delivery_problems("timed jobs", d, n)
    statuses = Counter(o["status"] for o in outcomes.values())
    completed = statuses.get("completed", 0)
    if completed != n:
        stuck = [i for i, o in outcomes.items() if o["status"] != "completed"][:3]
        problems.append(f"{completed} of {n} jobs completed; statuses {dict(statuses)}, e.g. {stuck}")

    arrivals = {s: t[0] for s, t in sink.arrivals.items() if s.startswith(prefix)}
    first = min(j.issued for j in jobs if j.issued)
    delivered = [arrivals[j.subject] for j in jobs if j.subject in arrivals]
    latencies = [(arrivals[j.subject] - j.issued) * 1000 for j in jobs if j.subject in arrivals and j.issued]
    starts = [(j.accepted - j.issued) * 1000 for j in jobs if j.accepted and j.issued]
    closes = [o["closed"] for o in outcomes.values() if o.get("closed")]
    if kind != "bare":
        # Herald's email carries the job's idempotency key as its Message-ID (README: Delivery rules).
        ids = {j.subject: j.job_id for j in started}
        out["message_id_is_job_id"] = sum(sink.message_ids.get(s, [""])[0] == f"<{i}@herald>" for s, i in ids.items())
    out.update(
        completed=completed,
        statuses=dict(statuses),
        deliveries={k: (v if isinstance(v, int) else len(v)) for k, v in d.items()},
        history=history,
        storage_calls=storage_calls_per_job(storage0, storage1, n),
        errors=start_errors[:5],
    )
    if delivered:
        wall = max(delivered) - first
        out.update(
            wall_s=_r(wall, 3),
            delivered_per_s=_r(len(delivered) / wall, 2),
            p50_ms=_r(percentile(latencies, 50)),
            p95_ms=_r(percentile(latencies, 95)),
            start_p50_ms=_r(percentile(starts, 50), 2),
            start_p95_ms=_r(percentile(starts, 95), 2),
        )
    if len(closes) == n:
        out.update(completed_per_s=_r(n / (max(closes) - first), 2))
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu1 if k in cpu0}
    machine, kernel = cpu.pop("machine"), cpu.pop("kernel")
    window = window_end - first
    per_job = {k: _r(v * 1000 / n, 2) for k, v in cpu.items()}
    ready = running.ready
    peak = after.get("hwm_kb") or after["maxrss_kb"]
    out.update(
        cpu_s={k: round(v, 3) for k, v in cpu.items()},
        server_cpu_ms_per_job=per_job.get("server"),
        worker_cpu_ms_per_job=per_job.get("worker"),
        api_cpu_ms_per_job=per_job.get("api"),
        sink_cpu_ms_per_job=per_job.get("sink"),
        driver_cpu_ms_per_job=per_job.get("driver"),
        total_cpu_ms_per_job=_r(sum(cpu.values()) * 1000 / n, 2),
        cpu_window_s=_r(window, 1),
        # Everything else on the machine meanwhile (other people's test runs...): noise.
        other_cores=_r(max(0.0, machine - kernel - sum(cpu.values())) / window, 2),
        kernel_cores=_r(kernel / window, 2),
        # Cores busy on average: a Python worker near 1.0 is the bottleneck (one GIL).
        server_cores=_r(cpu.get("server", 0) / window, 2),
        worker_cores=_r(cpu.get("worker", 0) / window, 2),
        # The worker's Python threads (the event loop, the workflow executor), which share one
        # GIL: near 1.0, the worker's Python side is saturated whatever its total says.
        # With several worker processes: all of them together (each its own GIL), and the busiest one.
        worker_python_cores=_r(sum(python_thread_seconds(a, b) for a, b in zip(threads0, threads1)) / window, 2),
        worker_python_cores_max=_r(max(python_thread_seconds(a, b) for a, b in zip(threads0, threads1)) / window, 2),
        worker_processes=len(worker_pids),
        machine_cores=_r(machine / window, 2),
        worker_idle_rss_mb=_r(ready.get("rss_kb", 0) / 1024),
        worker_peak_rss_mb=_r(peak / 1024),
        worker_rss_before_mb=_r(before["rss_kb"] / 1024),
        worker_rss_after_mb=_r(after["rss_kb"] / 1024),
        worker_peak_reset=ready.get("peak_reset"),
    )
    out["ok"] = not problems
    return out


# ---- batches: POST /notify/batch ---------------------------------------------------------------
Starter = Callable[[list[Job]], Awaitable[None]]


async def post_batch(http: LeanHttp, jobs: list[Job]) -> None:
    """`jobs` as one POST /notify/batch; each job's id is its item's `<batchId>-<n>`."""
    issued = time.time()
    for job in jobs:
        job.issued = issued
    items = [{"to": TO, "subject": job.subject, "body": BODY} for job in jobs]
    try:
        response = await http.post("/notify/batch", {"channel": "email", "items": items})
        if response.status_code != 202:
            raise RuntimeError(f"API answered {response.status_code}: {response.text[:200]}")
        ids = response.json()["jobIds"]
    except Exception as exc:  # noqa: BLE001 - a failed start is a result, not a crash
        for job in jobs:
            job.error = f"batch start failed: {exc!r}"[:300]
        return
    accepted = time.time()
    for job, job_id in zip(jobs, ids, strict=False):
        job.job_id, job.accepted = job_id, accepted


def batch_starter(http: LeanHttp, size: int, concurrency: int) -> Starter:
    """The jobs as batches of `size` emails (post_batch), `concurrency` POSTs in flight."""

    async def start(jobs: list[Job]) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(chunk: list[Job]) -> None:
            async with gate:
                await post_batch(http, chunk)

        await asyncio.gather(*(one(jobs[i : i + size]) for i in range(0, len(jobs), size)))

    return start


def _batch_of(job_id: str) -> str:
    return job_id.rsplit("-", 1)[0]


async def batch_outcomes(
    http: LeanHttp, jobs: list[Job], concurrency: int, timeout: float, sample_per_batch: int = 3
) -> dict[str, dict]:
    """Each item's status: its batch's counts (GET /batches/{id}, polled until done) where every item
    succeeded, else each item's GET /jobs/{id}/status; and a few items of every batch read by their
    job id anyway (the item lookup answers like a job's)."""
    gate = asyncio.Semaphore(concurrency)
    batches: dict[str, list[str]] = {}
    for job in jobs:
        if job.job_id:
            batches.setdefault(_batch_of(job.job_id), []).append(job.job_id)

    async def status_of(job_id: str) -> str:
        try:
            response = await http.get(f"/jobs/{job_id}/status")
            return response.json().get("status") if response.status_code == 200 else f"HTTP {response.status_code}"
        except (TimeoutError, HttpError, OSError, ValueError) as exc:
            return f"GET failed: {exc!r}"[:200]

    async def one(batch_id: str, ids: list[str]) -> dict[str, dict]:
        async with gate:
            deadline = time.monotonic() + timeout
            body: dict = {}
            while time.monotonic() < deadline:
                try:
                    response = await http.get(f"/batches/{batch_id}")
                    body = response.json() if response.status_code == 200 else {}
                except (TimeoutError, HttpError, OSError, ValueError):
                    body = {}
                if body.get("done"):
                    break
                await asyncio.sleep(0.5)
            if body.get("done") and body["counts"]["success"] == len(ids) == body["total"]:
                statuses = dict.fromkeys(ids, "completed")
                for job_id in ids[:: max(1, len(ids) // sample_per_batch)][:sample_per_batch]:
                    statuses[job_id] = await status_of(job_id)
            else:
                statuses = {i: await status_of(i) for i in ids}
        return {i: {"status": s, "closed": None} for i, s in statuses.items()}

    found: dict[str, dict] = {}
    for part in await asyncio.gather(*(one(b, ids) for b, ids in batches.items())):
        found.update(part)
    return found


async def batch_history_events(client: Client, jobs: list[Job], sample: int) -> dict:
    """History events per item: a sample of the batches' histories (the batch's workflow id), each
    divided by its items."""
    batches: dict[str, int] = Counter(_batch_of(j.job_id) for j in jobs if j.job_id)
    lengths, kinds, errors = await _histories(client, list(batches)[: max(1, sample)])
    totals = list(lengths.values())
    # A batch split into chunks: its own run holds no items, its chunks' runs (`<batchId>-chunk<k>`) do.
    chunk_events = {batch_id: await _chunk_events(client, batch_id) for batch_id in lengths}
    per_item = [(events + chunk_events[batch_id]) / batches[batch_id] for batch_id, events in lengths.items()]
    if not per_item:
        return {"sampled": 0, "errors": errors}
    return {
        "sampled": len(per_item),
        "per_job": round(sum(per_item) / len(per_item), 2),
        "per_batch": round(sum(totals) / len(totals), 1),
        "min": min(totals),
        "max": max(totals),
        "first_batch_by_type": dict(kinds),
        "chunk_events": sum(chunk_events.values()),
        "errors": errors,
    }


async def _chunk_events(client: Client, batch_id: str) -> int:
    """Events in all the chunk runs of a batch (0 for a batch of one run)."""
    total = 0
    for k in itertools.count():
        try:
            history = await client.get_workflow_handle(batch_chunk_id(batch_id, k)).fetch_history()
        except RPCError:
            return total
        total += len(history.events)
    return total


# ---- the paced phase --------------------------------------------------------------------------
async def run_paced(stack: Stack, running: Running, rate: float, seconds: float) -> dict[str, Any]:
    """Open loop at `rate`: a POST /jobs/email every 1/rate s, half a period later a GET
    /jobs/{id}/status of the job most recently accepted, and a quarter of a period after that the
    same job's describe from the driver's own Temporal client; each request's time from being sent
    to its answer. Then: every paced job delivered exactly once and completed."""
    assert running.api_url is not None and running.http is not None
    sink = stack.sink
    count = max(2, round(rate * seconds))
    period = 1 / rate
    http = LeanHttp(running.api_url, {"Authorization": f"Bearer {API_KEY}"}, max_connections=200)
    jobs, prefix = batch(count)
    post_ms: list[float] = []
    get_ms: list[float] = []
    describe_ms: list[float] = []
    late_ms: list[float] = []
    errors: list[str] = []
    get_status: Counter = Counter()
    recent: list[str] = []
    slow: list[tuple[float, str, float]] = []  # (s into the phase, request, ms) of each over its limit
    t_began = time.perf_counter()
    tasks: list[asyncio.Task] = []
    loop = asyncio.get_running_loop()

    async def timed(
        method: str, send: Awaitable[Response], times: list[float], limit_ms: float, expected: int
    ) -> Response | None:
        """The answer, its time in `times` (and in `slow` over `limit_ms`); None, with an error noted, when
        it failed or had another status than `expected`."""
        t = time.perf_counter()
        try:
            response = await send
        except (TimeoutError, HttpError, OSError) as exc:
            errors.append(f"{method}: {exc!r}"[:200])
            return None
        times.append((time.perf_counter() - t) * 1000)
        if times[-1] > limit_ms:
            slow.append((round(t - t_began, 2), method, round(times[-1], 1)))
        if response.status_code != expected:
            errors.append(f"{method} answered {response.status_code}: {response.text[:120]}")
            return None
        return response

    async def post(job: Job) -> None:
        job.issued = time.time()
        body = {"to": TO, "subject": job.subject, "body": BODY}
        if response := await timed("POST", http.post("/jobs/email", body), post_ms, 50, 202):
            job.job_id = response.json()["jobId"]
            recent.append(job.job_id)

    async def get(job_id: str) -> None:
        if response := await timed("GET", http.get(f"/jobs/{job_id}/status"), get_ms, 25, 200):
            get_status[response.json().get("status")] += 1

    async def describe(job_id: str) -> None:
        # What a GET costs at least: the one describe call it makes, from the driver's own client (no
        # HTTP, no API) at the same load, so a GET's tail can be told apart from the server's.
        t = time.perf_counter()
        try:
            await stack.client.get_workflow_handle(job_id).describe()
        except RPCError as exc:
            errors.append(f"describe: {exc!r}"[:200])
            return
        describe_ms.append((time.perf_counter() - t) * 1000)

    pids = {"server": stack.server_pid, "worker": running.worker_pids, "api": running.api.pid if running.api else None}
    waited = await wait_quiet(stack.quiet_wait)
    cpu0 = snapshot(pids)
    cpu_t0 = time.time()
    t0 = loop.time() + 0.1
    began = time.time()
    try:
        for k in range(count):
            for at, make in (
                (t0 + k * period, lambda: post(jobs[k])),  # noqa: B023 - called in this iteration
                (t0 + (k + 0.5) * period, lambda: get(recent[-1]) if recent else None),
                (t0 + (k + 0.75) * period, lambda: describe(recent[-1]) if recent else None),
            ):
                delay = at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                late_ms.append(max(0.0, loop.time() - at) * 1000)
                coro = make()
                if coro is not None:
                    tasks.append(asyncio.create_task(coro))
        await asyncio.gather(*tasks)
        sent_s = time.time() - began
        started = [j for j in jobs if j.job_id]
        all_in = await sink.wait_for({j.subject for j in started}, stack.job_timeout)
        await quiesce([stack.server_pid, *running.worker_pids])
        cpu1 = snapshot(pids)
        cpu_window = time.time() - cpu_t0
        outcomes = await herald_outcomes(stack.client, running.http, started, stack.concurrency, stack.job_timeout)
        await asyncio.sleep(0.5)
    finally:
        await http.aclose()

    d = _deliveries(sink, started, prefix)
    problems = []
    if errors:
        problems.append(f"{len(errors)} requests failed, e.g. {errors[0]}")
    if not all_in:
        problems.append("deliveries stalled")
    problems += _delivery_problems("paced jobs", d, len(started))
    statuses = Counter(o["status"] for o in outcomes.values())
    if statuses.get("completed", 0) != count:
        stuck = [i for i, o in outcomes.items() if o["status"] != "completed"][:3]
        problems.append(
            f"{statuses.get('completed', 0)} of {count} paced jobs completed; statuses {dict(statuses)}, e.g. {stuck}"
        )
    arrivals = {s: t[0] for s, t in sink.arrivals.items() if s.startswith(prefix)}
    latencies = [(arrivals[j.subject] - j.issued) * 1000 for j in started if j.subject in arrivals and j.issued]
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu1 if k in cpu0}
    machine, kernel = cpu.pop("machine"), cpu.pop("kernel")
    return {
        "rate_per_s": _r(rate, 2),
        "seconds": _r(sent_s, 1),
        "waited_for_quiet_s": waited,
        "posts": count,
        "gets": len(get_ms),
        "post_p50_ms": _r(percentile(post_ms, 50)),
        "post_p99_ms": _r(percentile(post_ms, 99)),
        "post_p90_ms": _r(percentile(post_ms, 90)),
        "post_p95_ms": _r(percentile(post_ms, 95)),
        "post_max_ms": _r(max(post_ms, default=None)),
        "posts_over_50_ms": sum(x > 50 for x in post_ms),
        "get_p50_ms": _r(percentile(get_ms, 50)),
        "get_p99_ms": _r(percentile(get_ms, 99)),
        "get_p90_ms": _r(percentile(get_ms, 90)),
        "get_p95_ms": _r(percentile(get_ms, 95)),
        "get_max_ms": _r(max(get_ms, default=None)),
        "gets_over_25_ms": sum(x > 25 for x in get_ms),
        "describe_p50_ms": _r(percentile(describe_ms, 50)),
        "describe_p90_ms": _r(percentile(describe_ms, 90)),
        "describe_p99_ms": _r(percentile(describe_ms, 99)),
        "driver_late_p99_ms": _r(percentile(late_ms, 99)),
        "get_statuses": dict(get_status),
        "slow_requests": sorted(slow)[:60],
        "delivery_p50_ms": _r(percentile(latencies, 50)),
        "delivery_p99_ms": _r(percentile(latencies, 99)),
        "server_cpu_ms_per_job": _r(cpu.get("server", 0) * 1000 / count, 2),
        "other_cores": _r(max(0.0, machine - kernel - sum(cpu.values())) / cpu_window, 2),
        "delivered": d["received"],
        "statuses": dict(statuses),
        "errors": errors[:5],
        "problems": problems,
        "ok": not problems,
    }


# ---- the sink's own ceiling -------------------------------------------------------------------
async def run_ceiling(sink: SinkProcess, n: int, concurrency: int, timeout: float) -> dict[str, Any]:
    """N emails sent straight to the sink with aiosmtplib (no Temporal), `concurrency` at a time:
    the most the sink (and this machine, with the driver as the client) takes."""
    from email.message import EmailMessage

    import aiosmtplib

    gate = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def send(subject: str) -> None:
        message = EmailMessage()
        message["From"] = "bench@localhost"
        message["To"] = TO
        message["Subject"] = subject
        message.set_content(BODY)
        async with gate:
            try:
                await aiosmtplib.send(message, hostname="127.0.0.1", port=sink.port)
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc)[:200])

    async def send_all(count: int) -> tuple[list[Job], str]:
        jobs, prefix = batch(count)
        await asyncio.gather(*(send(j.subject) for j in jobs))
        await sink.wait_for({j.subject for j in jobs}, timeout)
        return jobs, prefix

    async def send_over_sessions(count: int) -> tuple[list[Job], str]:
        """The same, over `concurrency` SMTP sessions kept open, each sending its share one after
        another: how a batch's items are sent (activities/email.py, SmtpSessions)."""
        jobs, prefix = batch(count)

        async def session(share: list[Job]) -> None:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port)
            try:
                await smtp.connect()
                for job in share:
                    message = EmailMessage()
                    message["From"] = "bench@localhost"
                    message["To"] = TO
                    message["Subject"] = job.subject
                    message.set_content(BODY)
                    await smtp.send_message(message)
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc)[:200])
            finally:
                smtp.close()

        await asyncio.gather(*(session(jobs[i::concurrency]) for i in range(concurrency)))
        await sink.wait_for({j.subject for j in jobs}, timeout)
        return jobs, prefix

    async def measured(send: Callable[[int], Awaitable[tuple[list[Job], str]]], what: str) -> dict[str, Any]:
        await send(min(30, n))
        cpu0 = snapshot(pids)
        first = time.time()
        jobs, prefix = await send(n)
        cpu1 = snapshot(pids)
        d = _deliveries(sink, jobs, prefix)
        last = max((t[0] for s, t in sink.arrivals.items() if s.startswith(prefix)), default=first)
        return {
            "rate": _r(n / max(last - first, 1e-6), 1),
            "cpu0": cpu0,
            "cpu1": cpu1,
            "first": first,
            "window": time.time() - first,
            "problems": _delivery_problems(what, d, n),
        }

    pids = {"sink": sink.pid}
    each = await measured(send_all, "sink ceiling")
    kept = await measured(send_over_sessions, "sink ceiling (sessions kept open)")
    cpu0, cpu1, window = each["cpu0"], each["cpu1"], each["window"]
    problems = (
        each["problems"] + kept["problems"] + ([f"{len(errors)} sends failed, e.g. {errors[0]}"] if errors else [])
    )
    return {
        "jobs": n,
        "concurrency": concurrency,
        "delivered_per_s": each["rate"],
        # A session per sender kept open (what a batch does): the sink's ceiling for batches.
        "sessions_delivered_per_s": kept["rate"],
        "sessions_sink_cpu_ms_per_email": _r((kept["cpu1"]["sink"] - kept["cpu0"]["sink"]) * 1000 / n, 2),
        "sessions_other_cores": _others(kept["cpu0"], kept["cpu1"], kept["window"]),
        "sink_cpu_ms_per_email": _r((cpu1["sink"] - cpu0["sink"]) * 1000 / n, 2),
        "driver_cpu_ms_per_email": _r((cpu1["driver"] - cpu0["driver"]) * 1000 / n, 2),
        "other_cores": _others(cpu0, cpu1, window),
        "saves_files": sink.save,
        "problems": problems,
        "ok": not problems,
    }


def _others(cpu0: dict[str, float], cpu1: dict[str, float], window: float) -> float | None:
    """Cores the rest of the machine used meanwhile (the sink and the driver are ours)."""
    return _r(max(0.0, sum((cpu1[k] - cpu0[k]) * (1 if k == "machine" else -1) for k in cpu1)) / window, 2)
