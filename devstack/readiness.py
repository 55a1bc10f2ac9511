"""Waiting until a service answers, while staying interruptible.

Every wait polls `probe()` until it returns True. Between polls it calls
`supervisor.sleep`, which raises at once if the launcher is told to stop or a child
dies, so a crashed service fails the start loudly instead of running into the timeout.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx

from devstack.processes import Supervisor


class NotReady(Exception):
    """A service did not become ready in time."""


def wait_until(
    what: str, probe: Callable[[], bool], supervisor: Supervisor, timeout: float, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        supervisor.check()
        if probe():
            return
        if time.monotonic() >= deadline:
            raise NotReady(f"{what} not ready after {timeout:.0f} s")
        supervisor.sleep(interval)


def port_open(host: str, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False

    return probe


def http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, timeout=2, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    return probe
