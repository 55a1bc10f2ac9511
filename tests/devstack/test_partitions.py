"""How many partitions per task queue `make run`'s server gets (devstack/temporal_server.py): one for a
database it makes, Temporal's default 4 for one made before that setting, whose queues may hold tasks in
partitions 1-3 that a server reading one partition would never hand out (docs/delivery.md)."""

from __future__ import annotations

from pathlib import Path

from devstack.temporal_server import DEFAULT_PARTITIONS, database_partitions, server_command


def _partition_flags(db_file: Path) -> list[str]:
    command = server_command(
        port=7233, ui_port=8233, db_file=db_file, namespace="default", partitions=database_partitions(db_file)
    )
    return [flag for flag in command if flag.startswith("matching.numTaskqueue")]


def test_a_database_made_now_runs_one_partition_per_queue_and_keeps_it(tmp_path):
    db_file = tmp_path / "data" / "temporal.db"
    assert _partition_flags(db_file) == [
        "matching.numTaskqueueReadPartitions=1",
        "matching.numTaskqueueWritePartitions=1",
    ]
    db_file.write_bytes(b"made by the server")
    assert database_partitions(db_file) == 1


def test_a_database_from_before_keeps_temporals_default_partitions(tmp_path):
    db_file = tmp_path / "temporal.db"
    db_file.write_bytes(b"made before one partition per queue")
    assert database_partitions(db_file) == DEFAULT_PARTITIONS == 4
    assert _partition_flags(db_file) == [
        "matching.numTaskqueueReadPartitions=4",
        "matching.numTaskqueueWritePartitions=4",
    ]
    # Moved by hand as docs/delivery.md says: the note beside it is what counts.
    (tmp_path / "temporal.db.partitions").write_text("1\n")
    assert database_partitions(db_file) == 1
