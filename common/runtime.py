"""A Herald process's life: its start-up heap set aside, leaving after the Temporal SDK."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def freeze_startup_heap() -> None:
    """Set what start-up made (modules, the app or the Workers) aside from the garbage collector: it
    lives as long as the process, and a full collection that walked it paused the API or the worker,
    with every request or task in flight, for 47-59 ms at a time under `make bench`'s load; set aside,
    3 ms in the API and 27 ms in the worker (whose cached workflows it still walks)."""
    gc.collect()
    gc.freeze()


def exit_skipping_teardown(code: int) -> None:
    """Exit with `code` once everything is flushed, without interpreter teardown.

    The Temporal SDK's Rust runtime keeps threads that can crash CPython's finalization
    (a known SDK issue: segfaults or aborts after all work is done), turning a clean exit
    into exit code 139. Everything of ours is finished and flushed by now.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """Have the kernel send this process `signum` when its parent dies (Linux's PR_SET_PDEATHSIG), so
    a child never outlives a killed parent; if the parent is already gone, the signal comes now."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signum)
