"""The fairness phase of `python -m bench`: two tenants on the make run stack (issue 17, docs/tenants.md).

Three measurements, each with fresh worker and API processes configured through HERALD_* as `make run`
configures them, plus HERALD_API_KEYS with two tenants (`tenant-a`, `tenant-b`):

- overtake: the worker runs (the make run stack, its default slots); tenant A posts `jobs` emails, half
  as one POST /notify/batch and half as single POST /jobs/email, at once; when all are accepted, tenant
  B posts one email. Measured: B's latency (POST to the sink), its position among the deliveries since
  A began, A's backlog (accepted, not yet delivered) when B posted and when B's email arrived.
- weights: HERALD_TENANT_WEIGHTS=tenant-a=3,tenant-b=1 on the worker; A posts `share_jobs` emails, then
  B as many, while the worker is stopped (a backlog of both); the worker starts. Measured: A's share of
  the first `share_jobs` deliveries (both still have a backlog throughout: 3:1 is 0.75).
- cap: HERALD_TENANT_RATE_LIMIT=`cap` on the worker; A posts `cap_jobs` emails and B `cap_b_jobs`, the
  worker stopped; the worker starts. Measured: A's sends per second over its whole span and after its
  first 2 s (steady), the most in any 1 s, each against the cap; B's rate (B is capped too) and how many
  of A's had gone when B's were all out (B is not slowed when most of A's still wait).

Every email must arrive exactly once (a problem otherwise, as in the other phases).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from bench.http_client import LeanHttp
from bench.phases import (
    Job,
    Running,
    Stack,
    _deliveries,
    _delivery_problems,
    _r,
    api_submit,
    batch,
    post_batch,
    start_all,
    start_processes,
)
from bench.procs import WorkerProcess

TENANTS = {"tenant-a": "bench-key-tenant-a", "tenant-b": "bench-key-tenant-b"}
API_KEYS = ",".join(f"{t}={k}" for t, k in TENANTS.items())
WEIGHTS = {"tenant-a": 3, "tenant-b": 1}
STEADY_AFTER_S = 2.0
WINDOW = 50
CONFIG_SETTLE_S = 5.0  # for a queue's new config to reach its partitions before jobs are queued


@dataclass
class FairnessOptions:
    jobs: int = 3000  # tenant A's emails in the overtake measurement: half one batch, half singles
    share_jobs: int = 400  # each tenant's emails in the weights measurement
    cap: float = 5.0  # HERALD_TENANT_RATE_LIMIT of the cap measurement
    cap_jobs: int = 150  # tenant A's emails in the cap measurement
    cap_b_jobs: int = 20  # tenant B's


def tenant_http(running: Running, tenant: str, concurrency: int) -> LeanHttp:
    assert running.api_url is not None
    return LeanHttp(running.api_url, {"Authorization": f"Bearer {TENANTS[tenant]}"}, concurrency)


def arrivals_of(stack: Stack, jobs: list[Job]) -> list[float]:
    """The first arrival time of each of `jobs`' emails that arrived, sorted."""
    got = stack.sink.arrivals
    return sorted(got[j.subject][0] for j in jobs if j.subject in got)


async def settle(stack: Stack, groups: dict[str, tuple[list[Job], str]], problems: list[str]) -> None:
    """Wait for every accepted email of every group; then exactly one each (else a problem)."""
    subjects = {j.subject for jobs, _ in groups.values() for j in jobs if not j.error}
    if not await stack.sink.wait_for(subjects, stack.job_timeout):
        problems.append("deliveries stalled: nothing arrived for --job-timeout seconds")
    await asyncio.sleep(0.5)  # a late duplicate would show now
    for what, (jobs, prefix) in groups.items():
        errors = [j.error for j in jobs if j.error]
        if errors:
            problems.append(f"{what}: {len(errors)} of {len(jobs)} POSTs failed, e.g. {errors[0]}")
        problems += _delivery_problems(what, _deliveries(stack.sink, jobs, prefix), len(jobs))


async def overtake(stack: Stack, opts: FairnessOptions, problems: list[str]) -> dict[str, Any]:
    running = await start_processes(stack, "fairness-overtake", "herald", True, api_keys=API_KEYS)
    a_http = tenant_http(running, "tenant-a", stack.concurrency)
    b_http = tenant_http(running, "tenant-b", 1)
    try:
        a_jobs, a_prefix = batch(opts.jobs)
        in_batch = opts.jobs // 2
        began = time.time()
        await asyncio.gather(
            post_batch(a_http, a_jobs[:in_batch]), start_all(a_jobs[in_batch:], stack.concurrency, api_submit(a_http))
        )
        [b_job], b_prefix = batch(1)
        await start_all([b_job], 1, api_submit(b_http))
        assert b_job.issued is not None
        if b_job.error is None:
            await stack.sink.wait_for({b_job.subject}, stack.job_timeout)
        await settle(stack, {"tenant A": (a_jobs, a_prefix), "tenant B": ([b_job], b_prefix)}, problems)
    finally:
        await a_http.aclose()
        await b_http.aclose()
        await running.close()
    a_times = arrivals_of(stack, a_jobs)
    out: dict[str, Any] = {
        "a_jobs": opts.jobs,
        "a_in_batch": in_batch,
        "a_posted_s": _r(b_job.issued - began, 2),
        "a_backlog_when_b_posted": opts.jobs - sum(1 for t in a_times if t < b_job.issued),
    }
    b_arrived = stack.sink.arrivals.get(b_job.subject, [None])[0]
    if b_arrived is not None:
        a_before = sum(1 for t in a_times if t < b_arrived)
        out.update(
            b_latency_s=_r(b_arrived - b_job.issued, 2),
            b_position=a_before + 1,
            a_left_when_b_delivered=opts.jobs - a_before,
            a_left_share=_r((opts.jobs - a_before) / opts.jobs, 3),
        )
    if a_times:
        out["a_all_delivered_s"] = _r(a_times[-1] - began, 1)
    return out


async def queued_then_worker(
    stack: Stack, name: str, settings: dict[str, str], counts: dict[str, int], problems: list[str]
) -> tuple[dict[str, list[Job]], float]:
    """Each tenant's emails POSTed (in `counts`' order) while the worker is stopped, then the worker
    started with `settings`; each tenant's jobs and when the worker was polling (time.time()).

    The worker is started once and stopped before the POSTs: at start it sets the weights and the cap on
    the queues (common/task_queue_config.py), and the server takes a moment to hand a queue's new config
    to all its partitions; set just as the worker starts polling, the first seconds ran without the cap
    (up to 4 x the cap in one second) and without the weights (an even share)."""
    running = await start_processes(stack, name, "herald", True, api_keys=API_KEYS, worker_settings=settings)
    await running.worker.stop()
    await asyncio.sleep(CONFIG_SETTLE_S)
    config, env = running.worker.config, running.worker.env
    running.worker = WorkerProcess(config, env, stack.workdir / f"{name}-worker-2.log")
    https = {t: tenant_http(running, t, stack.concurrency) for t in counts}
    jobs: dict[str, list[Job]] = {}
    prefixes: dict[str, str] = {}
    try:
        for tenant, n in counts.items():
            jobs[tenant], prefixes[tenant] = batch(n)
            await start_all(jobs[tenant], stack.concurrency, api_submit(https[tenant]))
        running.ready = await running.worker.start()
        started = time.time()
        await settle(stack, {f"{name} {t}": (jobs[t], prefixes[t]) for t in counts}, problems)
    finally:
        for http in https.values():
            await http.aclose()
        await running.close()
    return jobs, started


async def weights(stack: Stack, opts: FairnessOptions, problems: list[str]) -> dict[str, Any]:
    n = opts.share_jobs
    setting = ",".join(f"{t}={w}" for t, w in WEIGHTS.items())
    jobs, _ = await queued_then_worker(
        stack,
        "fairness-weights",
        {"api_keys": API_KEYS, "tenant_weights": setting},
        dict.fromkeys(TENANTS, n),
        problems,
    )
    order = sorted((t, tenant) for tenant, js in jobs.items() for t in arrivals_of(stack, js))
    first = [tenant for _, tenant in order[:n]]
    share = first.count("tenant-a") / len(first) if first else None
    a, b = WEIGHTS["tenant-a"], WEIGHTS["tenant-b"]
    # A's share in each run of WINDOW deliveries while both have a backlog: where the share dips.
    windows = [first[i : i + WINDOW] for i in range(0, len(first) - WINDOW + 1, WINDOW)]
    return {
        "a_share_per_window": [round(w.count("tenant-a") / WINDOW, 2) for w in windows],
        "window": WINDOW,
        "weights": setting,
        "jobs_each": n,
        "counted": len(first),
        "a_share": _r(share, 3),
        "a_share_vs_weights": _r(share / (a / (a + b)), 2) if share is not None else None,
        "a_to_b": _r(first.count("tenant-a") / max(1, first.count("tenant-b")), 2) if first else None,
    }


def rate(times: list[float], since: float | None = None) -> float | None:
    """Sends per second over `times` (sorted), from `since` (default the first) to the last."""
    if since is not None:
        times = [t for t in times if t >= since]
    if len(times) < 2:
        return None
    span = times[-1] - (since if since is not None else times[0])
    return (len(times) - (0 if since is not None else 1)) / span if span > 0 else None


def most_in_1s(times: list[float]) -> int:
    return max((sum(1 for u in times if t <= u < t + 1) for t in times), default=0)


async def cap(stack: Stack, opts: FairnessOptions, problems: list[str]) -> dict[str, Any]:
    jobs, started = await queued_then_worker(
        stack,
        "fairness-cap",
        {"api_keys": API_KEYS, "tenant_rate_limit": f"{opts.cap:g}"},
        {"tenant-a": opts.cap_jobs, "tenant-b": opts.cap_b_jobs},
        problems,
    )
    a_times, b_times = arrivals_of(stack, jobs["tenant-a"]), arrivals_of(stack, jobs["tenant-b"])
    out: dict[str, Any] = {"cap": opts.cap, "a_jobs": opts.cap_jobs, "b_jobs": opts.cap_b_jobs}
    if a_times:
        first = min(a_times[0], b_times[0] if b_times else a_times[0])
        a_rate, a_steady = rate(a_times), rate(a_times, first + STEADY_AFTER_S)
        out.update(
            first_send_after_worker_s=_r(first - started, 2),
            a_per_s=_r(a_rate, 2),
            a_vs_cap=_r(a_rate / opts.cap, 2) if a_rate else None,
            a_steady_per_s=_r(a_steady, 2),
            a_steady_vs_cap=_r(a_steady / opts.cap, 2) if a_steady else None,
            a_most_in_1s=most_in_1s(a_times),
            a_most_in_1s_vs_cap=_r(most_in_1s(a_times) / opts.cap, 2),
            a_per_second=[sum(1 for t in a_times if first + k <= t < first + k + 1) for k in range(60)],
        )
    if b_times:
        b_rate = rate(b_times)
        out.update(
            b_done_after_first_send_s=_r(b_times[-1] - min(a_times[:1] + b_times[:1]), 2),
            b_per_s=_r(b_rate, 2),
            b_vs_cap=_r(b_rate / opts.cap, 2) if b_rate else None,
            a_sent_when_b_done=sum(1 for t in a_times if t <= b_times[-1]),
        )
    return out


async def run_fairness(stack: Stack, opts: FairnessOptions) -> dict[str, Any]:
    """The three measurements; figures and problems as a dict (see the module's doc)."""
    problems: list[str] = []
    out: dict[str, Any] = {"name": "fairness", "problems": problems}
    for name, measure in (("overtake", overtake), ("weights", weights), ("cap", cap)):
        t = time.monotonic()
        try:
            out[name] = await measure(stack, opts, problems)
        except Exception as exc:  # noqa: BLE001 - one measurement that fails is a problem, not a crash
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            out[name] = None
        out[f"{name}_s"] = round(time.monotonic() - t, 1)
    out["ok"] = not problems
    return out
