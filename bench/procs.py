"""Child processes of the benchmark (SMTP sink, worker, API) and CPU readings from /proc."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
from pathlib import Path
from typing import IO, Any
from urllib.request import urlopen

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def child_env(**herald: str) -> dict[str, str]:
    """This environment without any HERALD_* setting of the caller's, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update({f"HERALD_{k.upper()}": v for k, v in herald.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a live process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]]:
    """Each thread of a live process: its name and its user + system CPU seconds.

    Python 3.11 does not name the threads it starts, so they all carry the process's name
    ("python..."); the Temporal SDK's Rust runtime names its own (tokio-runtime-w...)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm, rest = (task / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        out[int(task.name)] = (comm.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return out


def python_thread_seconds(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> float:
    """CPU seconds spent meanwhile by the threads named like the process's main thread (Python's)."""
    main = after[min(after)][0] if after else ""
    return sum(sec - before.get(tid, ("", 0.0))[1] for tid, (name, sec) in after.items() if name == main)


def machine_busy_seconds() -> float:
    """CPU seconds all of the machine's cores spent running processes and kernel threads since boot
    (user, nice, system, steal; not idle, I/O wait or interrupts, which no process is charged for)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = fields[:8]  # guest is inside user
    return (user + nice + system + steal) / CLOCK_TICKS


def kernel_thread_seconds() -> float:
    """CPU seconds of the kernel's own threads (kthreadd's children): e.g. the file system's journal
    and writeback, which work for the dev server's SQLite file but are not charged to it."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] in ("0", "2") and entry.name != "1":  # kthreadd (pid 2) and its children
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def own_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def find_child(name: str) -> int | None:
    """The pid of a direct child of this process whose command name is `name` (the dev server)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm, rest = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        if comm.split("(", 1)[1] == name and int(rest.split()[1]) == me:
            return int(entry.name)
    return None


class ChildFailed(RuntimeError):
    pass


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _Child:
    """A child process of the benchmark, its output in a log file."""

    what = "child process"  # for the error when it exits early

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def _expect(self, event: str, timeout: float) -> dict:
        """The first JSON line `{"event": event, ...}` the child writes (other lines skipped); ChildFailed
        with the end of its log if it exits first."""
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    await self.proc.wait()
                    raise ChildFailed(
                        f"{self.what} exited ({self.proc.returncode}) before {event!r}; "
                        f"its log ({self.log_path}) ends:\n{_tail(self.log_path)}"
                    )
                try:
                    message: Any = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict) and message.get("event") == event:
                    return message

    async def _reap(self, terminate: bool) -> None:
        if self.proc is not None and self.proc.returncode is None:
            if terminate:
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class WorkerProcess(_Child):
    """`python -m bench.worker_proc`, driven over stdin/stdout JSON lines."""

    what = "worker process"

    def __init__(self, config: dict, env: dict[str, str], log_path: Path) -> None:
        super().__init__(log_path)
        self.config = config
        self.env = env

    async def start(self, timeout: float = 60) -> dict:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - the child's log, open while it runs
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.worker_proc",
            json.dumps(self.config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            env=self.env,
        )
        return await self._expect("ready", timeout)

    async def usage(self) -> dict:
        return await self._send("mark", "mark")

    async def stop(self) -> dict:
        answer = await self._send("stop", "stopped")
        await self.close()
        return answer

    async def close(self) -> None:
        await self._reap(terminate=False)  # it exits by itself after "stop" (or EOF on stdin)

    async def _send(self, command: str, event: str) -> dict:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._expect(event, 30)


class ApiProcess(_Child):
    """`python -m api` (create_app + uvicorn), configured through HERALD_* variables."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(log_path)
        self.env = env

    async def start(self, ready_url: str, timeout: float = 60) -> None:
        import httpx

        self._log = open(self.log_path, "wb")  # noqa: SIM115 - the child's log, open while it runs
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "api",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            cwd=ROOT,
            env=self.env,
        )
        async with httpx.AsyncClient() as http, asyncio.timeout(timeout):
            while True:
                if self.proc.returncode is not None:
                    raise ChildFailed(
                        f"API process exited ({self.proc.returncode}); its log "
                        f"({self.log_path}) ends:\n{_tail(self.log_path)}"
                    )
                try:
                    if (await http.get(ready_url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        await self._reap(terminate=True)


class SinkProcess(_Child):
    """`python -m bench.sink_proc`: the dev SMTP sink, one JSON line per accepted message.

    A reader task collects the lines; `arrivals` maps each Subject to the arrival times of the
    messages that carried it (one entry per message, so duplicates show).
    """

    what = "SMTP sink"

    def __init__(self, port: int, outbox: Path, save: bool, log_path: Path) -> None:
        super().__init__(log_path)
        self.port, self.outbox, self.save = port, outbox, save
        self.arrivals: dict[str, list[float]] = {}
        self.message_ids: dict[str, list[str]] = {}
        self.count = 0
        self._news = asyncio.Event()
        self._reader: asyncio.Task | None = None

    async def start(self, timeout: float = 30) -> None:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - the child's log, open while it runs
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.sink_proc",
            json.dumps({"port": self.port, "outbox": str(self.outbox), "save": self.save}),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            env=child_env(),
            limit=1 << 20,
        )
        await self._expect("ready", timeout)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                m = json.loads(line)
            except ValueError:
                continue
            if "subject" not in m:
                continue
            self.arrivals.setdefault(m["subject"], []).append(m["t"])
            self.message_ids.setdefault(m["subject"], []).append(m["message_id"])
            self.count += 1
            self._news.set()

    async def wait_for(self, subjects: set[str], stall_timeout: float) -> bool:
        """Until every subject has arrived at least once; False once nothing new came for `stall_timeout` s."""
        while True:
            if all(s in self.arrivals for s in subjects):
                return True
            self._news.clear()
            try:
                await asyncio.wait_for(self._news.wait(), stall_timeout)
            except TimeoutError:
                return all(s in self.arrivals for s in subjects)

    def count_of(self, prefix: str) -> dict[str, int]:
        return {s: len(t) for s, t in self.arrivals.items() if s.startswith(prefix)}

    async def stop(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        await self._reap(terminate=False)
        if self._reader is not None:
            self._reader.cancel()


# The dev server's own count of its storage calls (its /metrics, `--metrics-port`): what a job costs
# the server besides CPU. Visibility calls are the ones that feed List and the Web UI's filters.
PERSISTENCE_COUNTERS = {"persistence_requests": "store", "visibility_persistence_requests": "visibility"}
METRICS_FLUSH_S = 1.5


async def server_storage_calls(metrics_url: str | None) -> dict[str, float]:
    """The dev server's storage calls so far, by "store:service:Operation" / "visibility:service:Operation"
    (summed over namespaces); {} without a metrics URL or when it cannot be read. It waits first: the server
    hands its counters to its Prometheus endpoint once a second: five jobs started together showed there
    within 1.6 s."""
    if metrics_url is None:
        return {}
    await asyncio.sleep(METRICS_FLUSH_S)

    def read() -> str:
        with urlopen(metrics_url, timeout=5) as response:
            return response.read().decode()

    try:
        text = await asyncio.to_thread(read)
    except OSError:
        return {}
    calls: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            kind = PERSISTENCE_COUNTERS.get(sample.name.removesuffix("_total"))
            if kind is not None:
                key = f"{kind}:{sample.labels.get('service_name', '?')}:{sample.labels.get('operation', '?')}"
                calls[key] = calls.get(key, 0.0) + sample.value
    return calls


def storage_calls_per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, Any] | None:
    """Storage calls per job between two readings: in all, to visibility, and by operation (the most first)."""
    if not before or not after or not jobs:
        return None
    delta = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}
    store = sum(v for k, v in delta.items() if k.startswith("store:"))
    visibility = sum(v for k, v in delta.items() if k.startswith("visibility:"))
    return {
        "calls": store,
        "visibility_calls": visibility,
        "per_job": round(store / jobs, 3),
        "visibility_per_job": round(visibility / jobs, 3),
        "by_operation": {k: round(v / jobs, 3) for k, v in sorted(delta.items(), key=lambda kv: -kv[1])},
    }
