"""`python -m devstack` end to end: it comes up, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.support.processes import ROOT, alive, descendants, launcher_env, survivors, wait_ready

pytestmark = pytest.mark.skipif(
    not (ROOT / "worker.py").exists() or not (ROOT / "api" / "__main__.py").exists(),
    reason="the launcher starts `python -m worker` and `python -m api`; worker.py or "
    "api/__main__.py does not exist yet",
)


@pytest.fixture
def start_launcher(tmp_path, free_port):
    """Start `python -m devstack` on free ports; returns (launcher, processes, log reader)."""
    env, api_port = launcher_env(tmp_path, free_port)
    log_path = tmp_path / "launcher.log"
    launchers: list[subprocess.Popen] = []

    def start() -> tuple[subprocess.Popen, dict[int, int], Callable[[], str]]:
        with log_path.open("wb") as log:
            launcher = subprocess.Popen(
                [sys.executable, "-m", "devstack"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
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
