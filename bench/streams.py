"""`python -m bench.streams`: what live status costs the server per open stream (run by hand).

Starts its own stack: the Temporal dev server on a SQLite file with `make run`'s flags
(devstack.temporal_server.server_command), `python -m worker` and `python -m api` (dev mode),
each a process of its own, configured by HERALD_* variables. It starts `--jobs` email jobs
delayed by 10 minutes (they sit on a durable timer: nothing changes while they are watched),
then measures, one phase after another, each over `--seconds`:

  idle        the stack with those jobs and nobody watching
  sse         one `GET /jobs/{id}/events` stream open on each job
  long-poll   one client per job looping `GET /jobs/{id}/status?wait=W&since=<ETag>`
  poll-1s     (--compare-polling) one client per job reading `GET /jobs/{id}/status` every second
  fan-out     `--viewers` SSE streams on each job (1,000 by default): the jobs the API watches (its
              history long polls on the server, `herald_live_watched_jobs`), its memory, then every
              job cancelled and each stream's lag from its job's cancel to the `cancelled` event

CPU is user + system time from /proc/<pid>/stat of the dev server, the API and the worker. Per
phase it prints CPU seconds per minute of each process, and the difference to idle per stream
(ms of CPU per stream per minute); also the CPU it took to open the streams (ms per stream),
and how much CPU the rest of the machine used meanwhile (other people's work on a shared machine
makes the figures noisy: run again if `others` is high). JSON goes to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio.client import Client

from bench.report import write_figures
from devstack.ports import free_port
from devstack.temporal_server import namespace_answers, server_command

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KEY = "herald-dev-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


# ---- processes and their CPU ------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a live process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = fields[:8]
    return (user + nice + system + steal) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Stack:
    work: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    api_url: str = ""
    temporal_address: str = ""

    def start(self, max_streams: int) -> None:
        port, ui_port, api_port = free_port(), free_port(), free_port()
        self.temporal_address = f"127.0.0.1:{port}"
        logs = self.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        command = server_command(port=port, ui_port=ui_port, db_file=self.work / "temporal.db", namespace="default")
        self._spawn("server", command, logs, os.environ.copy())
        probe = namespace_answers(port, "default")
        deadline = time.monotonic() + 60
        while not probe():
            if time.monotonic() > deadline or self.procs["server"].poll() is not None:
                raise RuntimeError(f"the dev server did not start; see {logs / 'server.log'}")
            time.sleep(0.3)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        env.update(
            {
                "HERALD_DEV_MODE": "true",
                "HERALD_TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
                "HERALD_DATA_DIR": str(self.work / "data"),
                "HERALD_API_PORT": str(api_port),
                "HERALD_MAX_LIVE_STREAMS": str(max_streams),
                "HERALD_WORKER_METRICS_PORT": "0",
                "HERALD_WEBHOOK_ALLOW_HOSTS": "127.0.0.1/8",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self._spawn("worker", [sys.executable, "-m", "worker"], logs, env)
        self._spawn("api", [sys.executable, "-m", "api"], logs, env)
        self.api_url = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 60
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}); see {logs / (name + '.log')}")
            try:
                if httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not become ready")
            time.sleep(0.3)

    def _spawn(self, name: str, command: list[str], logs: Path, env: dict[str, str]) -> None:
        log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - the child's log, open while it runs
        self.procs[name] = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(proc.pid) for name, proc in self.procs.items()}

    def stop(self) -> None:
        for name in ("api", "worker", "server"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Meter:
    """CPU of the stack's processes, of this driver and of the whole machine over a window."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def __enter__(self) -> Meter:
        self.t0, self.procs0 = time.monotonic(), self.stack.cpu()
        self.own0, self.machine0 = own_cpu_seconds(), machine_busy_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.t0
        self.procs = {k: v - self.procs0[k] for k, v in self.stack.cpu().items()}
        self.own = own_cpu_seconds() - self.own0
        self.others = machine_busy_seconds() - self.machine0 - sum(self.procs.values()) - self.own

    def per_minute(self) -> dict[str, float]:
        """CPU seconds per minute of each process (and of the rest of the machine, `others`)."""
        scale = 60 / self.seconds
        return {
            **{k: v * scale for k, v in self.procs.items()},
            "driver": self.own * scale,
            "others": max(0.0, self.others) * scale,
        }


# ---- the watchers -------------------------------------------------------------------------------
async def sse_reader(client: httpx.AsyncClient, job_id: str, n: int, opened: asyncio.Event, counts: dict) -> None:
    async with client.stream("GET", f"/jobs/{job_id}/events") as response:
        if response.status_code != 200:
            counts["refused"] = counts.get("refused", 0) + 1
            opened.set()
            return
        async for chunk in response.aiter_raw():
            counts["events"] = counts.get("events", 0) + chunk.count(b"event: status")
            counts["keepalives"] = counts.get("keepalives", 0) + chunk.count(b": keep-alive")
            opened.set()


async def long_poller(
    client: httpx.AsyncClient, job_id: str, wait: float, offset: float, opened: asyncio.Event, counts: dict
) -> None:
    """GET ?wait=W&since=<ETag> again and again; the first one `offset` s in, so that the clients'
    re-asks spread evenly over the wait (as independent clients' would)."""
    etag = (await client.get(f"/jobs/{job_id}/status")).headers["etag"]
    opened.set()
    await asyncio.sleep(offset)
    while True:
        response = await client.get(f"/jobs/{job_id}/status", params={"wait": wait, "since": etag.strip('"')})
        counts["answers"] = counts.get("answers", 0) + 1
        if response.status_code != 200:
            counts["refused"] = counts.get("refused", 0) + 1
            await asyncio.sleep(1)
            continue
        etag = response.headers["etag"]


async def poller(
    client: httpx.AsyncClient, job_id: str, every: float, offset: float, opened: asyncio.Event, counts: dict
) -> None:
    opened.set()
    await asyncio.sleep(offset)
    while True:
        await client.get(f"/jobs/{job_id}/status")
        counts["answers"] = counts.get("answers", 0) + 1
        await asyncio.sleep(every)


async def phase(stack: Stack, name: str, seconds: float, job_ids: list[str], make=None, warmup: float = 1) -> dict:
    """Open one watcher per job (when `make` is given), then meter `seconds` of steady state
    (from `warmup` s after the last one opened)."""
    limits = httpx.Limits(max_connections=len(job_ids) + 20, max_keepalive_connections=len(job_ids) + 20)
    counts: dict = {}
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers=AUTH, limits=limits, timeout=httpx.Timeout(120, connect=10)
    ) as client:
        tasks, opening = [], None
        if make is not None:
            events = [asyncio.Event() for _ in job_ids]
            with Meter(stack) as opening:
                tasks = [
                    asyncio.create_task(make(client, job_id, n, opened, counts))
                    for n, (job_id, opened) in enumerate(zip(job_ids, events))
                ]
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 120)
                await asyncio.sleep(1)  # the last ones' first reads are done
            await asyncio.sleep(max(0.0, warmup - 1))
        before = dict(counts)
        with Meter(stack) as steady:
            await asyncio.sleep(seconds)
        during = {k: v - before.get(k, 0) for k, v in counts.items()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    result = {
        "phase": name,
        "streams": len(job_ids) if make else 0,
        "seconds": round(steady.seconds, 1),
        "cpu_s_per_min": {k: round(v, 3) for k, v in steady.per_minute().items()},
        "counts": during,
    }
    if opening is not None and name == "sse":
        result["open_cpu_ms_per_stream"] = {k: round(1000 * v / len(job_ids), 2) for k, v in opening.procs.items()}
    return result


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def gauge(metrics: str, name: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else None


async def fan_out(stack: Stack, job_ids: list[str], viewers: int, seconds: float) -> dict:
    """`viewers` SSE streams on each job; what the API holds on the server for them, its memory and
    CPU; then each job cancelled, and every stream's lag from its job's cancel to its last event."""
    n = len(job_ids) * viewers
    limits = httpx.Limits(max_connections=n + 20, max_keepalive_connections=n + 20)
    api = stack.procs["api"].pid
    arrived: dict[str, list[float]] = {j: [] for j in job_ids}
    received: dict[str, list[float]] = {j: [] for j in job_ids}
    refused = 0
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers=AUTH, limits=limits, timeout=httpx.Timeout(120, connect=30)
    ) as client:

        async def viewer(job_id: str, opened: asyncio.Event) -> None:
            nonlocal refused
            async with client.stream("GET", f"/jobs/{job_id}/events") as response:
                if response.status_code != 200:
                    refused += 1
                    opened.set()
                    return
                async for line in response.aiter_lines():
                    if line.startswith("event: status"):
                        opened.set()
                    elif line.startswith("data:") and '"cancelled"' in line:
                        arrived[job_id].append(time.monotonic())
                        received[job_id].append(time.time())
                        return

        rss_before = rss_mb(api)
        events = [asyncio.Event() for _ in range(n)]
        with Meter(stack) as opening:
            tasks = [asyncio.create_task(viewer(job_ids[k % len(job_ids)], opened)) for k, opened in enumerate(events)]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 300)
        metrics = (await client.get("/metrics")).text
        watched, open_viewers = gauge(metrics, "herald_live_watched_jobs"), gauge(metrics, "herald_live_viewers")
        with Meter(stack) as steady:
            await asyncio.sleep(seconds)
        rss_open = rss_mb(api)
        asked: dict[str, float] = {}

        async def cancel(job_id: str) -> None:
            asked[job_id] = time.monotonic()
            answer = await client.post(f"/jobs/{job_id}/cancel")
            assert answer.status_code == 202, answer.text

        await asyncio.gather(*(cancel(j) for j in job_ids))
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)
    lags = [t - asked[j] for j in job_ids for t in arrived[j]]
    # The change's own time: when the server closed the job's run (its cancel recorded).
    temporal = await Client.connect(stack.temporal_address)
    closed = {j: (await temporal.get_workflow_handle(j).describe()).close_time for j in job_ids}
    since_change = [t - c.timestamp() for j, c in closed.items() if c for t in received[j]]
    return {
        "phase": "fan-out",
        "streams": n,
        "viewers_per_job": viewers,
        "seconds": round(steady.seconds, 1),
        "cpu_s_per_min": {k: round(v, 3) for k, v in steady.per_minute().items()},
        "open_cpu_ms_per_stream": {k: round(1000 * v / n, 2) for k, v in opening.procs.items()},
        "watched_jobs": watched,
        "viewers": open_viewers,
        "refused": refused,
        "api_rss_mb": {"before": round(rss_before, 1), "with_streams": round(rss_open, 1)},
        "events_received": len(lags),
        # From the cancel request (the server's work on 100 cancels at once included) ...
        "lag_p50_s": percentile(lags, 50),
        "lag_p99_s": percentile(lags, 99),
        "lag_max_s": max(lags) if lags else None,
        # ... and from the change as the job's run recorded it: what live status itself adds.
        "event_lag_p50_s": percentile(since_change, 50),
        "event_lag_p99_s": percentile(since_change, 99),
    }


async def start_jobs(stack: Stack, n: int) -> list[str]:
    async with httpx.AsyncClient(base_url=stack.api_url, headers=AUTH, timeout=30) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/jobs/email",
                    json={"to": "ada@example.com", "subject": f"stream bench {i}", "body": "b", "delay": 600_000},
                )
                for i in range(n)
            )
        )
        ids = [a.json()["jobId"] for a in answers]
        # Each job's first workflow task (which starts the timer) is done: all sit `delayed`.
        deadline = time.monotonic() + 60
        for job_id in ids:
            while (await client.get(f"/jobs/{job_id}/status")).json()["status"] != "delayed":
                assert time.monotonic() < deadline, f"{job_id} never got delayed"
                await asyncio.sleep(0.2)
        return ids


def report(results: list[dict], streams: int) -> str:
    idle = next(r for r in results if r["phase"] == "idle")["cpu_s_per_min"]
    lines = [
        f"{'phase':<10} {'server':>8} {'api':>8} {'worker':>8} {'others':>8}   "
        f"{'server/stream':>13} {'api/stream':>10}   open server/api (ms/stream)",
        f"{'':<10} {'CPU s per minute':^35}   {'CPU ms per minute':^26}",
    ]
    for r in results:
        cpu = r["cpu_s_per_min"]
        per = {k: 1000 * (cpu[k] - idle[k]) / streams for k in ("server", "api")} if r["streams"] else {}
        opened = r.get("open_cpu_ms_per_stream", {})
        lines.append(
            f"{r['phase']:<10} {cpu['server']:>8.2f} {cpu['api']:>8.2f} {cpu['worker']:>8.2f} "
            f"{cpu['others']:>8.2f}   {per.get('server', 0):>13.1f} {per.get('api', 0):>10.1f}   "
            + (f"{opened['server']:.1f} / {opened['api']:.1f}" if opened else "")
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="herald-streams-"))
    stack = Stack(work)
    results: list[dict] = []
    try:
        stack.start(max_streams=max(args.streams, args.streams * args.viewers) + 10)
        job_ids = await start_jobs(stack, args.streams)
        await asyncio.sleep(args.settle)
        results.append(await phase(stack, "idle", args.seconds, job_ids))
        results.append(await phase(stack, "sse", args.seconds, job_ids, sse_reader))
        spread = len(job_ids)
        results.append(
            await phase(
                stack,
                "long-poll",
                args.seconds,
                job_ids,
                warmup=args.wait + 1,
                make=(lambda c, j, n, o, k: long_poller(c, j, args.wait, n * args.wait / spread, o, k)),
            )
        )
        if args.compare_polling:
            results.append(
                await phase(
                    stack,
                    "poll-1s",
                    args.seconds,
                    job_ids,
                    warmup=2,
                    make=(lambda c, j, n, o, k: poller(c, j, 1.0, n / spread, o, k)),
                )
            )
        if args.viewers:
            # Last: it cancels the jobs.
            results.append(await fan_out(stack, job_ids, args.viewers, args.seconds))
    finally:
        stack.stop()
    print(
        f"{args.streams} jobs delayed 10 min; {args.seconds:.0f} s per phase; long polls wait={args.wait:g} s; "
        f"{os.cpu_count()} cores"
    )
    print(report([r for r in results if r["phase"] != "fan-out"], args.streams))
    idle = results[0]["cpu_s_per_min"]
    for r in results:
        if "counts" not in r:
            continue
        line = f"  {r['phase']}: {r['counts']}"
        answers = r["counts"].get("answers")
        if answers:
            per = {k: 1000 * (r["cpu_s_per_min"][k] - idle[k]) * r["seconds"] / 60 / answers for k in ("server", "api")}
            r["cpu_ms_per_request"] = {k: round(v, 2) for k, v in per.items()}
            line += f"; CPU per request: server {per['server']:.2f} ms, api {per['api']:.2f} ms"
        print(line)
    for r in results:
        if r["phase"] == "fan-out":
            print(
                f"  fan-out: {r['streams']} SSE streams on {args.streams} jobs ({r['viewers_per_job']} each): "
                f"{r['watched_jobs']:.0f} jobs watched (history long polls on the server) for {r['viewers']:.0f} "
                f"viewers, {r['refused']} refused; API RSS {r['api_rss_mb']['before']} -> "
                f"{r['api_rss_mb']['with_streams']} MB; CPU s/min server {r['cpu_s_per_min']['server']:.2f}, "
                f"api {r['cpu_s_per_min']['api']:.2f}; event lag from the recorded change "
                f"p50 {r['event_lag_p50_s']:.3f} s, "
                f"p99 {r['event_lag_p99_s']:.3f} s; from the cancel request p50 {r['lag_p50_s']:.3f} s, "
                f"p99 {r['lag_p99_s']:.3f} s ({r['events_received']} events)"
            )
    out = {
        "streams": args.streams,
        "seconds": args.seconds,
        "wait": args.wait,
        "machine": platform.platform(),
        "cores": os.cpu_count(),
        "phases": results,
        "work_dir": str(work),
    }
    write_figures(args.out, out)
    print(f"wrote {args.out}; logs in {work / 'logs'}")
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100, help="jobs, and streams (or long polls) open at once")
    parser.add_argument("--seconds", type=float, default=30, help="metered seconds per phase")
    parser.add_argument("--wait", type=float, default=30, help="the long polls' wait=N")
    parser.add_argument("--settle", type=float, default=5, help="seconds of quiet after starting the jobs")
    parser.add_argument("--compare-polling", action="store_true", help="also a phase of clients polling every second")
    parser.add_argument("--viewers", type=int, default=10, help="SSE streams per job in the fan-out phase (0: skip it)")
    parser.add_argument("--out", type=Path, default=ROOT / ".data" / "bench-streams.json")
    return parser.parse_args(argv)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(parse())))
