"""Real processes a test starts (`python -m api`, `python -m worker`, `python -m devstack`): waiting on
them, and finding every process a launcher started, so none outlives its test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def start_module(module: str, env: dict[str, str], **output: Any) -> subprocess.Popen:
    """`python -m <module>` from the project root, as deployed, with nothing on its stdin; `output`
    says where its stdout and stderr go (Popen's own arguments)."""
    return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, **output)


def start_logged(module: str, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """`python -m <module>` (start_module) writing both its streams into `log_path`."""
    with log_path.open("wb") as log:
        return start_module(module, env, stdout=log, stderr=subprocess.STDOUT)


def kill_now(process: subprocess.Popen) -> None:
    """SIGKILL, and reaped: a test's process gone for sure, whatever it was doing."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait()


async def until_logged(process: subprocess.Popen, log_path: Path, text: str, timeout: float = 60) -> None:
    """Waits until `text` is in the process's log (start_logged); fails if it dies or never writes it."""
    end = time.monotonic() + timeout
    while text not in log_path.read_text(errors="replace"):
        assert process.poll() is None and time.monotonic() < end, log_path.read_text(errors="replace")
        await asyncio.sleep(0.1)


def fetch_when_served(url: str, process: subprocess.Popen, what: str, timeout: float = 30) -> str:
    """The page at `url` once `process` serves it; fails if the process dies or never answers."""
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                assert answer.status == 200
                return answer.read().decode()
        except OSError:
            assert process.poll() is None and time.monotonic() < end, f"{what} never answered {url}"
            time.sleep(0.2)


# ---- `python -m devstack` and what it starts ---------------------------------------------------
START_TIMEOUT = 120


def proc_stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, state, start time) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of `root`: pid → start time."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))):
            children.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[2]
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found[pid] = starts[pid]
            todo.append(pid)
    return found


def alive(pid: int, start: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[2] == start and stat[1] != "Z"


def launcher_env(tmp_path: Path, free_port) -> tuple[dict[str, str], int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    api_port = free_port()
    env.update(
        HERALD_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        HERALD_TEMPORAL_UI_PORT=str(free_port()),
        HERALD_API_PORT=str(api_port),
        HERALD_SMTP_PORT=str(free_port()),
        HERALD_DEV_SMS_PORT=str(free_port()),
        HERALD_DATA_DIR=str(tmp_path / "data"),
    )
    return env, api_port


def survivors(processes: dict[int, int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [pid for pid, start in processes.items() if alive(pid, start)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def wait_ready(launcher: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            pytest.fail(f"launcher exited with {launcher.returncode}:\n{log_path.read_text()}")
        try:
            if (
                httpx.get(url, timeout=2, trust_env=False).status_code == 200
                and "Ctrl-C to stop" in log_path.read_text()
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not ready after {START_TIMEOUT} s:\n{log_path.read_text()}")


@dataclass
class DevStack:
    """A running `python -m devstack`, and every process it started that a test has seen."""

    launcher: subprocess.Popen
    env: dict[str, str]
    api_url: str
    log_path: Path
    processes: dict[int, int] = field(default_factory=dict)  # pid → start time

    @property
    def data_dir(self) -> Path:
        return Path(self.env["HERALD_DATA_DIR"])

    def log(self) -> str:
        return self.log_path.read_text()

    def interrupt(self, timeout: float = 90) -> int:
        """Ctrl-C, as a terminal sends it: the launcher's exit code once it has stopped everything.
        The bound only stops a hang (each child has its grace: the worker 20 s, the others 10 s);
        past it the test fails with the launcher's log, which says which child held it up."""
        self.launcher.send_signal(signal.SIGINT)
        try:
            return self.launcher.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the launcher did not stop within {timeout} s of Ctrl-C:\n{self.log()}")

    def record_processes(self) -> dict[int, int]:
        """The launcher's live descendants now, kept so that none outlives the test."""
        found = descendants(self.launcher.pid)
        self.processes.update(found)
        return found


@contextlib.contextmanager
def running_devstack(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[DevStack]:
    """`python -m devstack` on free ports, ready (its API answers and it said so); whatever it started is
    killed on the way out if the test left it running (a failed test must not leave the stack behind)."""
    env, api_port = launcher_env(tmp_path, free_port)
    log_path = tmp_path / "launcher.log"
    stack = DevStack(start_logged("devstack", env, log_path), env, f"http://127.0.0.1:{api_port}", log_path)
    try:
        wait_ready(stack.launcher, f"{stack.api_url}/readyz", log_path)
        stack.record_processes()
        yield stack
    finally:
        if stack.launcher.poll() is None:
            stack.launcher.kill()
            stack.launcher.wait()
        for pid, started in stack.processes.items():
            if alive(pid, started):
                os.kill(pid, signal.SIGKILL)
