"""The stack stays up: `make run`'s launcher starts a dead process again, pausing longer while it
keeps dying, and Ctrl-C still leaves nothing behind.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import sys
import threading
import time

import httpx
import pytest

from common.settings import DEV_API_KEY
from devstack.processes import Backoff, RestartPolicy, StopRequested, Supervisor
from tests.support.processes import alive, running_devstack, survivors


# ---- the pause before a restart ---------------------------------------------------------------
def test_the_pause_doubles_while_a_child_keeps_dying_and_is_capped():
    backoff = Backoff(RestartPolicy(first_s=1, factor=2, cap_s=30, stable_s=60))
    assert [backoff.after_exit(uptime_s=0.5) for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_the_pause_starts_over_once_a_child_stayed_up_a_while():
    backoff = Backoff(RestartPolicy(first_s=1, factor=2, cap_s=30, stable_s=60))
    assert [backoff.after_exit(uptime_s=5) for _ in range(4)] == [1, 2, 4, 8]
    assert backoff.after_exit(uptime_s=60) == 1  # up a minute: a fresh start
    assert backoff.after_exit(uptime_s=2) == 2


def test_the_default_policy_is_1_2_4_up_to_30_seconds_reset_after_a_minute():
    assert RestartPolicy() == RestartPolicy(first_s=1, factor=2, cap_s=30, stable_s=60)


def test_a_crash_looping_child_is_started_again_with_growing_pauses(tmp_path, capsys):
    """A real child that exits at once, under a fast policy: its starts come further and further apart."""
    starts = tmp_path / "starts"
    argv = [
        sys.executable,
        "-c",
        f"import sys, time; open({str(starts)!r}, 'a').write(f'{{time.monotonic()}}\\n'); sys.exit(3)",
    ]
    supervisor = Supervisor(grace_seconds=5, restart=RestartPolicy(first_s=0.2, factor=2, cap_s=0.8, stable_s=60))

    def stop_after_five_starts() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not starts.exists() or len(starts.read_text().split()) < 5):
            time.sleep(0.05)
        supervisor.request_stop()

    threading.Thread(target=stop_after_five_starts, daemon=True).start()
    supervisor.start("looper", argv)
    with pytest.raises(StopRequested):
        supervisor.run_forever()
    supervisor.stop_all()

    out = capsys.readouterr().out
    pauses = [
        float(p)
        for p in re.findall(
            r"looper \(pid \d+\) exited with code 3 after [\d.]+ s up; "
            r"starting it again in ([\d.]+) s",
            out,
        )
    ]
    assert pauses[:4] == [0.2, 0.4, 0.8, 0.8], out  # doubling, then capped
    times = [float(line) for line in starts.read_text().split()]
    assert len(times) >= 5 and len(re.findall(r"restarted looper \(pid \d+\)", out)) == len(times) - 1, out
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Each start no sooner than its pause (and not much later: the supervisor looks every 0.2 s).
    for gap, pause in zip(gaps, pauses):
        assert pause <= gap < pause + 3, (gaps, pauses)


# ---- the whole stack ---------------------------------------------------------------------------
def pid_of(name: str, log: str, after: int = 0) -> int | None:
    """The pid of the latest `name` the launcher started, if it is not `after`."""
    pids = [int(p) for p in re.findall(rf"(?:started|restarted) {name} \(pid (\d+)\)", log)]
    return pids[-1] if pids and pids[-1] != after else None


def test_a_killed_worker_is_started_again_and_the_stack_keeps_working(tmp_path, free_port):
    with running_devstack(tmp_path, free_port) as stack:
        launcher, log = stack.launcher, stack.log
        worker = pid_of("worker", log())
        assert worker in stack.processes, log()

        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (new := pid_of("worker", log(), after=worker)) is None:
            assert launcher.poll() is None, f"the launcher exited with {launcher.returncode}:\n{log()}"
            assert time.monotonic() < deadline, f"the worker was not started again:\n{log()}"
            time.sleep(0.1)
        assert f"worker (pid {worker}) was killed by SIGKILL" in log(), log()
        assert "starting it again in 1 s" in log(), log()
        assert new in stack.record_processes() and not alive(worker, stack.processes[worker]), log()

        # A job sent now completes: the new worker took over.
        with httpx.Client(
            base_url=stack.api_url, timeout=10, trust_env=False, headers={"Authorization": f"Bearer {DEV_API_KEY}"}
        ) as api:
            job = api.post("/jobs/email", json={"to": "ada@example.com", "subject": "after", "body": "restart"})
            assert job.status_code == 202, job.text
            status_url = job.json()["statusUrl"]
            deadline = time.monotonic() + 60
            while (status := api.get(status_url).json()["status"]) != "completed":
                assert status in ("queued", "processing", "delayed") and time.monotonic() < deadline, (status, log())
                time.sleep(0.2)
        assert launcher.poll() is None, log()

        # Ctrl-C still stops everything, the restarted worker included.
        assert stack.interrupt() == 0, stack.log()
        assert survivors(stack.processes, timeout=5) == [], log()
