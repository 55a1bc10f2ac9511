"""Supervision of the dev stack's child processes.

Each child runs in its own process group (so a terminal Ctrl-C reaches only the launcher,
which then stops the children in order) and gets SIGTERM from the kernel if the launcher
dies (PR_SET_PDEATHSIG), so nothing outlives a killed launcher. Its stdout and stderr are
copied to the launcher's stdout, each line prefixed with the child's name.

Once the stack is up (`run_forever`), a child that exits is logged and started again after a
pause that grows while it keeps dying (1 s, 2 s, 4 s ... 30 s) and starts from 1 s again once it
has stayed up a minute. While the stack comes up, a child that exits stops everything instead:
that is a configuration to fix, not a crash to ride out.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_prctl = _libc.prctl  # resolved before any fork: the child must not load anything

_output_lock = threading.Lock()


def say(name: str, line: str) -> None:
    """One line on the launcher's stdout, prefixed like the children's."""
    with _output_lock:
        sys.stdout.write(f"{name:>9} | {line.rstrip()}\n")
        sys.stdout.flush()


def say_block(lines: Sequence[str]) -> None:
    """Several unprefixed lines, kept together."""
    with _output_lock:
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        sys.stdout.flush()


class StopRequested(Exception):
    """SIGINT or SIGTERM reached the launcher."""


class ChildExited(Exception):
    """A child ended while the stack was coming up."""

    def __init__(self, name: str, returncode: int) -> None:
        super().__init__(f"{name} exited with code {returncode}")
        self.name = name
        self.returncode = returncode


@dataclass(frozen=True)
class RestartPolicy:
    """The pause before a dead child is started again."""

    first_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 30.0
    # A child that stayed up this long before dying starts again after `first_s`.
    stable_s: float = 60.0


class Backoff:
    """The pauses of one child: doubling while it keeps dying soon after each start."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.streak = 0  # deaths in a row, each soon after its start

    def after_exit(self, uptime_s: float) -> float:
        """The pause before the next start, for a child that died after `uptime_s` seconds up."""
        p = self.policy
        if uptime_s >= p.stable_s:
            self.streak = 0
        self.streak += 1
        return min(p.cap_s, p.first_s * p.factor ** (self.streak - 1))


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _die_with_parent(parent_pid: int) -> None:
    """preexec_fn: runs in the forked child just before exec."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    # How long it may take to stop after SIGTERM before it is killed (None: the supervisor's grace).
    stop_grace: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    _reader: threading.Thread = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._copy_output, daemon=True, name=f"output-{self.name}")
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _copy_output(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            say(self.name, raw.decode(errors="replace"))

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)  # the group id is the child's pid

    def finish_output(self, timeout: float = 1.0) -> None:
        self._reader.join(timeout)


class Supervisor:
    """Starts children, notices when one dies (stopping the stack while it comes up, starting the
    child again once it is up), and stops them all."""

    def __init__(self, grace_seconds: float = 10.0, restart: RestartPolicy = RestartPolicy()) -> None:
        self.grace_seconds = grace_seconds
        self.restart_policy = restart
        self.children: list[Child] = []
        self._stop = threading.Event()
        self._force = threading.Event()
        self._backoffs: dict[str, Backoff] = {}
        self._pending: dict[str, float] = {}  # child name → when to start it again

    # -- signals -------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.request_stop()

    def request_stop(self) -> None:
        if self._stop.is_set():
            self._force.set()  # a second Ctrl-C: stop waiting for a graceful exit
        self._stop.set()

    # -- running -------------------------------------------------------------------------

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, stop_grace: float | None = None
    ) -> Child:
        self.check()
        child = self._spawn(name, list(argv), dict(env) if env is not None else None, stop_grace)
        self.children.append(child)
        say("devstack", f"started {name} (pid {child.pid})")
        return child

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None, stop_grace: float | None) -> Child:
        # Always from the main thread: PR_SET_PDEATHSIG fires when the forking *thread* ends.
        process = subprocess.Popen(
            argv,
            env=dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=functools.partial(_die_with_parent, os.getpid()),
        )
        return Child(name, process, argv=argv, env=env, stop_grace=stop_grace)

    def check(self) -> None:
        """Raise StopRequested or ChildExited if the stack should come down now."""
        if self._stop.is_set():
            raise StopRequested()
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                child.finish_output()
                raise ChildExited(child.name, code)

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake up (raising) at once for a signal or a dead child."""
        deadline = time.monotonic() + seconds
        while True:
            self.check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._stop.wait(min(remaining, 0.2))

    def run_forever(self) -> NoReturn:
        """Keep every child running until a signal (raised as StopRequested)."""
        while True:
            if self._stop.is_set():
                raise StopRequested()
            self.restart_dead()
            self._stop.wait(0.2)

    def restart_dead(self) -> None:
        """Log each child that exited and schedule its restart; start the ones whose pause is over."""
        now = time.monotonic()
        for index, child in enumerate(self.children):
            code = child.process.poll()
            if code is None:
                continue
            if child.name not in self._pending:
                child.finish_output()
                uptime = now - child.started_at
                backoff = self._backoffs.setdefault(child.name, Backoff(self.restart_policy))
                pause = backoff.after_exit(uptime)
                self._pending[child.name] = now + pause
                say(
                    "devstack",
                    f"{child.name} (pid {child.pid}) {describe_exit(code)} after {uptime:.1f} s up; "
                    f"starting it again in {pause:g} s",
                )
            elif now >= self._pending[child.name]:
                del self._pending[child.name]
                child.signal_group(signal.SIGKILL)  # anything the dead one left in its group
                self.children[index] = self._spawn(child.name, child.argv, child.env, child.stop_grace)
                say("devstack", f"restarted {child.name} (pid {self.children[index].pid})")

    # -- stopping ------------------------------------------------------------------------

    def stop_all(self) -> None:
        """SIGTERM every child, the last started first; SIGKILL whatever is left after its grace."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                say("devstack", f"stopping {child.name}")
                child.signal_group(signal.SIGTERM)
                grace = self.grace_seconds if child.stop_grace is None else child.stop_grace
                self._wait(child, time.monotonic() + grace)
        for child in self.children:
            if child.process.poll() is None:
                say("devstack", f"{child.name} did not stop in time: killing it")
            child.signal_group(signal.SIGKILL)  # the leader, and anything it left behind
            child.process.wait()
            child.finish_output()

    def _wait(self, child: Child, deadline: float) -> None:
        while child.process.poll() is None and time.monotonic() < deadline:
            if self._force.is_set():
                return
            time.sleep(0.05)
