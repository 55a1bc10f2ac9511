"""Cleanup jobs: each removes one kind of stale file from a directory set in the settings."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from common.models import CleanupReport, CleanupTask
from common.settings import Settings

LOG_SUFFIXES = (".log", ".log.gz")


class MaintenanceActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="run_cleanup")
    async def run_cleanup(self, task: CleanupTask) -> CleanupReport:
        s = self.settings
        if task.task == "delete_temp":
            return _remove(s.temp_dir, task.task, lambda p: _older_than(p, s.temp_max_age_hours * 3600))
        if task.task == "remove_old_logs":
            return _remove(
                s.log_dir,
                task.task,
                lambda p: p.name.endswith(LOG_SUFFIXES) and _older_than(p, s.log_retention_days * 86400),
            )
        if task.task == "expire_sessions":
            return _remove(s.session_dir, task.task, _session_expired)
        raise ApplicationError(f"unknown cleanup task {task.task!r}", type="UnknownTask", non_retryable=True)


def _remove(directory: Path, task: str, stale: Callable[[Path], bool]) -> CleanupReport:
    report = CleanupReport(task=task, directory=str(directory))
    if not directory.is_dir():
        return report  # Nothing to clean is a success, not an error.
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        if stale(path):
            # missing_ok: another cleanup run (or the owner) may have removed it meanwhile.
            path.unlink(missing_ok=True)
            report.removed.append(str(path.relative_to(directory)))
        else:
            report.kept += 1
    return report


def _older_than(path: Path, seconds: float) -> bool:
    return time.time() - path.stat().st_mtime > seconds


def _session_expired(path: Path) -> bool:
    """A session file is JSON with `expiresAt` (ISO 8601 or epoch seconds); unreadable ones are kept."""
    if path.suffix != ".json":
        return False
    try:
        expires = json.loads(path.read_text()).get("expiresAt")
        if isinstance(expires, (int, float)):
            when = datetime.fromtimestamp(expires, UTC)
        else:
            when = datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
    except (OSError, ValueError, AttributeError, TypeError):
        return False
    return when <= datetime.now(UTC)
