"""Report jobs: read what Temporal's visibility knows about a user's jobs, write it as one JSON file.

`notification-history` lists every job started for the user (typed notifications carry the
HeraldUser search attribute, common/models.py `user_ref`) with its state, newest first, from
visibility alone: a run's type and final status are search attributes, its first (or dead-letter)
state is its memo. The document is written to `<data_dir>/reports/<jobId>.json` (atomically: a
reader never sees half a report) and served by the API at `/reports/{jobId}/result`.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError

from common.models import (
    JOB_STATUS_KEY,
    JOB_TYPE_KEY,
    JOB_USER_KEY,
    STATE_MEMO_KEY,
    Phase,
    ReportReceipt,
    ReportRequest,
    report_path,
    result_url,
    user_ref,
)
from common.settings import Settings
from common.vocabulary import FAILED_BY_ENDING

# The newest runs a report lists; a user with more gets the newest ones and `truncated: true`.
MAX_REPORT_ENTRIES = 1000
_CLOSED = {
    WorkflowExecutionStatus.COMPLETED: Phase.COMPLETED,
    WorkflowExecutionStatus.FAILED: Phase.FAILED,
    WorkflowExecutionStatus.CANCELED: Phase.CANCELLED,
    **dict.fromkeys(FAILED_BY_ENDING, Phase.FAILED),
}


class ReportActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="build_report")
    async def build_report(self, request: ReportRequest) -> ReportReceipt:
        job_id = activity.info().workflow_id
        assert job_id is not None, "a report is named by its ReportWorkflow's id"
        if request.report_type != "notification-history":
            raise ApplicationError(
                f"unknown report type {request.report_type!r}", type="UnknownReport", non_retryable=True
            )
        entries, truncated = await notification_history(activity.client(), user_ref(request.user_id, request.scope))
        document = {
            "jobId": job_id,
            "reportType": request.report_type,
            "userId": request.user_id,
            "generatedAt": datetime.now(UTC).isoformat(),
            "total": len(entries),
            "truncated": truncated,
            "counts": _counts(entries),
            "notifications": entries,
        }
        await asyncio.to_thread(_write, report_path(self.settings.data_dir, job_id), document)
        return ReportReceipt(report_type=request.report_type, notifications=len(entries), result_url=result_url(job_id))


async def notification_history(client: Client, ref: str) -> tuple[list[dict[str, Any]], bool]:
    """The user's jobs (their latest run each), newest first; and whether there were more."""
    query = f"{JOB_USER_KEY.name} = '{ref}'"
    latest: dict[str, WorkflowExecution] = {}
    seen = 0
    async for run in client.list_workflows(query, limit=MAX_REPORT_ENTRIES * 2):
        seen += 1
        if run.id not in latest or run.start_time > latest[run.id].start_time:
            latest[run.id] = run
    runs = sorted(latest.values(), key=lambda r: r.start_time, reverse=True)
    entries = [await _entry(run) for run in runs[:MAX_REPORT_ENTRIES]]
    return entries, len(runs) > MAX_REPORT_ENTRIES or seen >= MAX_REPORT_ENTRIES * 2


async def _entry(run: WorkflowExecution) -> dict[str, Any]:
    attributes = run.typed_search_attributes
    try:
        state = (await run.memo()).get(STATE_MEMO_KEY)
    except Exception:  # noqa: BLE001 - an unreadable memo (a key no longer configured) leaves the rest
        state = None
    state = state if isinstance(state, dict) else {}
    entry: dict[str, Any] = {
        "jobId": run.id,
        "type": attributes.get(JOB_TYPE_KEY) or state.get("kind"),
        "status": _phase(run, attributes.get(JOB_STATUS_KEY), state).value,
        "createdAt": run.start_time.isoformat(),
    }
    if run.close_time:
        entry["finishedAt"] = run.close_time.isoformat()
    if entry["status"] == Phase.FAILED.value and state.get("error"):
        entry["error"] = state["error"]
    return entry


def _phase(run: WorkflowExecution, status: str | None, state: dict[str, Any]) -> Phase:
    """The job's state in the `/jobs/{id}/status` words, as far as visibility tells it."""
    if status in (Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED):
        return Phase(status)  # what the workflow recorded outranks how its run ended
    if run.status in _CLOSED:
        return _CLOSED[run.status]
    try:
        return Phase(state.get("phase") or status or Phase.QUEUED)
    except ValueError:
        return Phase.QUEUED


def _counts(entries: list[dict[str, Any]]) -> dict[str, int]:
    counts = {phase.value: 0 for phase in Phase}
    for entry in entries:
        counts[entry["status"]] += 1
    return counts


def _write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document, ensure_ascii=False, indent=2))
    os.replace(temporary, path)
