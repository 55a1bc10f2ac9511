"""Free TCP ports for a stack started on one machine by tests and the bench."""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
from pathlib import Path

# Ports from here up to the kernel's ephemeral range. A port handed out with bind(0) (the dev server's
# history, matching and worker services; every outgoing connection) comes from the ephemeral range, so a
# port chosen below it cannot be taken by them between choosing it and the process that binds it starting;
# that race once failed CI when the dev server took the port chosen for the API.
FIRST_PORT = 10000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOCK = threading.Lock()


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _own_slice() -> range:
    """This process's share of the ports below the ephemeral range: pytest-xdist workers each take their own,
    so two workers never choose the same port."""
    low = _ephemeral_low()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker) if worker.isdigit() else 0
    size = (low - FIRST_PORT) // max(workers, 1)
    start = FIRST_PORT + index * size
    return range(start, start + size)


_PORTS = _own_slice()
# A random place to start: a child process (a bench run by a test) inherits its parent's slice.
_NEXT = itertools.count(random.randrange(max(len(_PORTS), 1)))


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on and no bind(0) will hand out."""
    if len(_PORTS) < 100:  # an ephemeral range set unusually low: fall back to the kernel's choice
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    with _LOCK:
        for _ in range(len(_PORTS)):
            port = _PORTS[next(_NEXT) % len(_PORTS)]
            if _free(port):
                return port
    raise RuntimeError(f"no free port in {_PORTS.start}-{_PORTS.stop - 1}")
