"""free_port (devstack/ports.py): ports no bind(0) hands out, a separate slice per pytest-xdist worker."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys

from devstack import ports
from devstack.ports import FIRST_PORT, _ephemeral_low, free_port
from tests.support.processes import ROOT

SLICE = "from devstack.ports import _PORTS, free_port; print(_PORTS.start, _PORTS.stop, free_port())"


def test_ports_come_from_below_the_ephemeral_range_and_are_free():
    low = _ephemeral_low()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    for port in ports:
        assert FIRST_PORT <= port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_skipped(monkeypatch):
    with socket.socket() as s:
        taken = free_port()
        s.bind(("127.0.0.1", taken))
        s.listen()
        # The next port handed out would be the one just taken.
        monkeypatch.setattr(ports, "_NEXT", itertools.count(ports._PORTS.index(taken)))
        assert free_port() != taken


def test_each_xdist_worker_has_its_own_slice():
    slices = []
    for worker in ("gw0", "gw1", "gw2", "gw3"):
        env = os.environ | {"PYTEST_XDIST_WORKER": worker, "PYTEST_XDIST_WORKER_COUNT": "4"}
        out = subprocess.run(
            [sys.executable, "-c", SLICE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        start, stop, port = map(int, out.stdout.split())
        assert start <= port < stop
        slices.append(range(start, stop))
    for a, b in itertools.pairwise(slices):
        assert a.stop <= b.start
    assert slices[0].start == FIRST_PORT and slices[-1].stop <= _ephemeral_low()
