"""Supervision of the dev stack's child processes.

Each child runs in its own process group (so a terminal Ctrl-C reaches only the launcher,
which then stops the children in order) and gets SIGTERM from the kernel if the launcher
dies (PR_SET_PDEATHSIG), so nothing outlives a killed launcher. Its stdout and stderr are
copied to the launcher's stdout, each line prefixed with the child's name.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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
    """A child ended while the stack was supposed to be running."""

    def __init__(self, name: str, returncode: int) -> None:
        super().__init__(f"{name} exited with code {returncode}")
        self.name = name
        self.returncode = returncode


def _die_with_parent(parent_pid: int) -> None:
    """preexec_fn: runs in the forked child just before exec."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    _reader: threading.Thread = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._copy_output, daemon=True,
                                        name=f"output-{self.name}")
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _copy_output(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            say(self.name, raw.decode(errors="replace"))

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)  # the group id is the child's pid
        except ProcessLookupError:
            pass

    def finish_output(self, timeout: float = 1.0) -> None:
        self._reader.join(timeout)


class Supervisor:
    """Starts children, notices when one dies, and stops them all."""

    def __init__(self, grace_seconds: float = 10.0) -> None:
        self.grace_seconds = grace_seconds
        self.children: list[Child] = []
        self._stop = threading.Event()
        self._force = threading.Event()

    # -- signals -------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._stop.is_set():
            self._force.set()  # a second Ctrl-C: stop waiting for a graceful exit
        self._stop.set()

    # -- running -------------------------------------------------------------------------

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        self.check()
        process = subprocess.Popen(
            list(argv),
            env=dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1"),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=lambda parent=os.getpid(): _die_with_parent(parent),
        )
        child = Child(name, process)
        self.children.append(child)
        say("devstack", f"started {name} (pid {child.pid})")
        return child

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
        """Until a signal or a dead child (raised as StopRequested / ChildExited)."""
        while True:
            self.sleep(3600)

    # -- stopping ------------------------------------------------------------------------

    def stop_all(self) -> None:
        """SIGTERM every child, the last started first; SIGKILL whatever is left after grace."""
        deadline = time.monotonic() + self.grace_seconds
        for child in reversed(self.children):
            if child.process.poll() is None:
                say("devstack", f"stopping {child.name}")
                child.signal_group(signal.SIGTERM)
                self._wait(child, deadline)
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
