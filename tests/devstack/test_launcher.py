"""`python -m devstack` end to end: it comes up, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not (ROOT / "worker.py").exists() or not (ROOT / "api" / "__main__.py").exists(),
    reason="the launcher starts `python -m worker` and `python -m api`; worker.py or "
           "api/__main__.py does not exist yet",
)

START_TIMEOUT = 120


def proc_stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, state, start time) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
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


@pytest.fixture
def start_launcher(tmp_path, free_port):
    """Start `python -m devstack` on free ports; returns (launcher, processes, log reader)."""
    env, api_port = launcher_env(tmp_path, free_port)
    log_path = tmp_path / "launcher.log"
    launchers: list[subprocess.Popen] = []

    def start() -> tuple[subprocess.Popen, dict[int, int], Callable[[], str]]:
        with log_path.open("wb") as log:
            launcher = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env=env,
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        launchers.append(launcher)
        wait_ready(launcher, f"http://127.0.0.1:{api_port}/readyz", log_path)
        processes = descendants(launcher.pid)
        recorded.update(processes)
        assert len(processes) >= 5, log_path.read_text()  # temporal, 2 sinks, worker, api
        return launcher, processes, log_path.read_text

    recorded: dict[int, int] = {}
    yield start
    for launcher in launchers:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    for pid, started in recorded.items():  # a failed test must not leave the stack running
        if alive(pid, started):
            os.kill(pid, signal.SIGKILL)


def survivors(processes: dict[int, int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [pid for pid, start in processes.items() if alive(pid, start)]) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_ctrl_c_stops_everything(start_launcher, tmp_path):
    launcher, processes, log = start_launcher()
    assert "Ctrl-C to stop" in log()
    assert (tmp_path / "data" / "temporal.db").exists()
    assert (tmp_path / "data" / "webhook_secret").read_text().startswith("whsec_")

    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(timeout=30) == 0, log()
    assert survivors(processes, timeout=5) == [], log()


def test_children_do_not_outlive_a_killed_launcher(start_launcher):
    launcher, processes, log = start_launcher()
    launcher.kill()  # no chance to clean up: PR_SET_PDEATHSIG must take them down
    launcher.wait()
    assert survivors(processes, timeout=20) == [], log()


def wait_ready(launcher: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            pytest.fail(f"launcher exited with {launcher.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200 and \
                    "Ctrl-C to stop" in log_path.read_text():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not ready after {START_TIMEOUT} s:\n{log_path.read_text()}")
