"""How a job's workflow is started: its workflow, task queue, memo, search attributes and summary.

One definition for every starter: the API (api/job_starter.py), a schedule's action
(common/builtin_schedules.py, api/schedule_store.py) and a job's `then` follow-up, which its parent
workflow starts as a child (workflows/job_tracking.py). So it takes the moment of the start as `now`
(the workflow passes `workflow.now()`) and names the workflow by its pinned name, since common/ imports no workflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes

from common.models import (
    CHANNELS,
    JOB_STATUS_KEY,
    JOB_TYPE_KEY,
    JOB_USER_KEY,
    STATE_MEMO_KEY,
    TASK_QUEUES,
    CallbackState,
    CleanupInput,
    FollowUp,
    JobFamily,
    JobKind,
    JobSpec,
    JobState,
    NotificationInput,
    Phase,
    ReportInput,
    RetrySpec,
)
from common.settings import Settings
from common.summaries import job_details, job_summary

JobRequest = NotificationInput | CleanupInput | ReportInput
# The pinned workflow names (tests/replay/test_names.py) of each kind of job input.
WORKFLOW_NAMES: dict[type, str] = {
    NotificationInput: "NotificationWorkflow",
    CleanupInput: "CleanupWorkflow",
    ReportInput: "ReportWorkflow",
}


@dataclass
class StartOptions:
    """What a job's workflow is started with besides its input and id."""

    workflow: str
    task_queue: str
    memo: dict[str, Any]
    search_attributes: TypedSearchAttributes
    priority: Priority
    state: JobState
    # What the Temporal Web UI shows for the run (redacted: common/summaries.py).
    summary: str
    details: str


def start_options(request: JobRequest, priority: int | None = None, now: datetime | None = None) -> StartOptions:
    spec = request.job
    now = now or datetime.now(UTC)
    due = spec.due_at(now)
    phase = Phase.DELAYED if due and due > now else Phase.QUEUED
    # The memo holds the state from the first moment, before any worker has seen the job.
    initial = JobState(
        job_id=spec.job_id, kind=spec.kind, family=spec.family, phase=phase,
        max_attempts=spec.retry.max_attempts, created_at=spec.created_at, updated_at=spec.created_at,
        recipient=spec.recipient, not_before=due.isoformat() if due is not None and phase == Phase.DELAYED else None,
        callback=CallbackState(url=spec.callback_url) if spec.callback_url else None,
    )
    return StartOptions(
        workflow=WORKFLOW_NAMES[type(request)],
        task_queue=TASK_QUEUES[spec.kind],
        memo={STATE_MEMO_KEY: initial},
        search_attributes=TypedSearchAttributes([SearchAttributePair(JOB_TYPE_KEY, spec.kind),
                                                 SearchAttributePair(JOB_STATUS_KEY, phase.value)]
                                                # Whose job it is, where a userId is known (typed notifications).
                                                + ([SearchAttributePair(JOB_USER_KEY, spec.user_ref)]
                                                   if spec.user_ref else [])),
        priority=Priority(priority_key=priority) if priority else Priority.default,
        state=initial,
        summary=job_summary(request),
        details=job_details(request),
    )


def new_spec(job_id: str, kind: JobKind, family: JobFamily, settings: Settings, *, retry: RetrySpec | None = None,
             delay_ms: int = 0, deliver_at: str | None = None, callback_url: str | None = None,
             recipient: str | None = None, then: FollowUp | None = None) -> JobSpec:
    """A job's spec, with what the deployment's settings decide for every job (timeouts, heartbeats)."""
    return JobSpec(
        job_id=job_id, kind=kind, family=family,
        created_at=datetime.now(UTC).isoformat(),
        retry=retry or RetrySpec(),
        delay_ms=delay_ms,
        deliver_at=deliver_at,
        callback_url=callback_url,
        recipient=recipient,
        attempt_timeout_s=settings.send_timeout_seconds,
        retry_after_cap_s=settings.retry_after_cap_seconds,
        # A send's attempts heartbeat (activities/attempt_log.py); a cleanup's and a report's do not.
        heartbeat_timeout_s=(settings.send_heartbeat_timeout_seconds or None) if kind not in ("cleanup", "report")
        else None,
        # A rate-limited channel sends every attempt as an activity: the limit only counts those.
        first_attempt_local=settings.rate_limit(CHANNELS[kind]) is None,
        then=then,
    )
