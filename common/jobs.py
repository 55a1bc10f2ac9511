"""A job's input, and how its workflow is started: workflow, task queue, memo, search attributes, summary.

Every kind of job input is built here (email_job, ..., typed_email_job, redrive_input), and every
start takes its options from start_options: the API (api/jobs/starter.py, whose start_job is the one
function that starts a job), a schedule's action (common/builtin_schedules.py, api/schedules/service.py)
and a job's `then` follow-up, which its parent workflow starts as a child (workflows/job_tracking.py).
So it takes the moment of the start as `now` (the workflow passes `workflow.now()`) and names the
workflow by its pinned name (common/names.py), since common/ imports no workflow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes

from common.models import (
    JOB_STATUS_KEY,
    JOB_TYPE_KEY,
    JOB_USER_KEY,
    LEAN_LIFECYCLE_INPUT,
    STATE_MEMO_KEY,
    TASK_QUEUES,
    CleanupInput,
    CleanupTask,
    CleanupTaskName,
    EmailMessage,
    FollowUp,
    JobFamily,
    JobKind,
    JobSpec,
    JobState,
    NotificationInput,
    Phase,
    ReportInput,
    RetrySpec,
    SmsMessage,
    TypedEmail,
    WebhookRequest,
    user_ref,
)
from common.names import CLEANUP_WORKFLOW, NOTIFICATION_WORKFLOW, REPORT_WORKFLOW
from common.settings import Settings
from common.summaries import job_details, job_summary
from common.tenants import TENANT_KEY, TENANT_MEMO_KEY, Tenant

JobRequest = NotificationInput | CleanupInput | ReportInput
# The pinned workflow names (tests/replay/test_names.py) of each kind of job input.
WORKFLOW_NAMES: dict[type, str] = {
    NotificationInput: NOTIFICATION_WORKFLOW,
    CleanupInput: CLEANUP_WORKFLOW,
    ReportInput: REPORT_WORKFLOW,
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
    initial = JobState.initial(
        spec, phase, spec.created_at, not_before=due.isoformat() if due is not None and phase == Phase.DELAYED else None
    )
    return StartOptions(
        workflow=WORKFLOW_NAMES[type(request)],
        task_queue=TASK_QUEUES[spec.kind],
        memo={STATE_MEMO_KEY: initial} | tenant_memo(spec.tenant),
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(JOB_TYPE_KEY, spec.kind), SearchAttributePair(JOB_STATUS_KEY, phase.value)]
            # Whose job it is, where a userId is known (typed notifications).
            + ([SearchAttributePair(JOB_USER_KEY, spec.user_ref)] if spec.user_ref else [])
            + tenant_attributes(spec.tenant)
        ),
        priority=job_priority(priority, spec.tenant),
        state=initial,
        summary=job_summary(request),
        details=job_details(request),
    )


def job_priority(priority: int | None, tenant: str | None) -> Priority:
    """What a job's tasks carry to Temporal's matcher: its priority key (1 first) and its tenant as the
    fairness key, so a busy channel's workers are shared between tenants (docs/tenants.md, "Fair dispatch").

    The tenant's weight (HERALD_TENANT_WEIGHTS) is not attached here: the workers set it on the task
    queues as a fairness-weight override (common/task_queue_config.py), which Temporal prefers to a task's
    own and which so also applies to the tasks already queued and to every schedule's future runs. The
    job's activities and child workflows (a `then`, a callback, a batch's chunks) inherit both keys.
    A job from before tenants (no tenant) has no fairness key: the empty key, one more "tenant"."""
    if priority is None and tenant is None:
        return Priority.default
    return Priority(priority_key=priority or None, fairness_key=tenant)


def tenant_memo(tenant: str | None) -> dict[str, Any]:
    """The memo entry that records a run's tenant (none for a run of a job from before tenants): the API
    reads it in the describe it does anyway (api/jobs/service.py)."""
    return {TENANT_MEMO_KEY: tenant} if tenant is not None else {}


def tenant_attributes(tenant: str | None) -> list[SearchAttributePair[str]]:
    """The HeraldTenant search attribute of a run: the Web UI's and the admin routes' filter."""
    return [SearchAttributePair(TENANT_KEY, tenant)] if tenant is not None else []


def new_spec(
    job_id: str,
    kind: JobKind,
    family: JobFamily,
    settings: Settings,
    *,
    retry: RetrySpec | None = None,
    delay_ms: int = 0,
    deliver_at: str | None = None,
    callback_url: str | None = None,
    recipient: str | None = None,
    then: FollowUp | None = None,
    tenant: Tenant | None = None,
) -> JobSpec:
    """A job's spec, with what the deployment's settings decide for every job (timeouts, heartbeats)."""
    return JobSpec(
        job_id=job_id,
        kind=kind,
        family=family,
        created_at=datetime.now(UTC).isoformat(),
        retry=retry or RetrySpec(),
        delay_ms=delay_ms,
        deliver_at=deliver_at,
        callback_url=callback_url,
        recipient=recipient,
        attempt_timeout_s=settings.send_timeout_seconds,
        retry_after_cap_s=settings.retry_after_cap_seconds,
        # A send's attempts heartbeat (activities/attempt_log.py); a cleanup's and a report's do not.
        heartbeat_timeout_s=(settings.send_heartbeat_timeout_seconds or None)
        if kind not in ("cleanup", "report")
        else None,
        then=then,
        tenant=tenant.name if tenant else None,
        tenant_scope=tenant.scope if tenant else "",
        lifecycle=LEAN_LIFECYCLE_INPUT,
    )


# ---- each kind of job's input from its spec and message (the API's routes, `then`, schedules) ------
def email_job(spec: JobSpec, to: str, subject: str, body: str) -> NotificationInput:
    return NotificationInput(
        job=spec, email=EmailMessage(to=to, subject=subject, body=body, idempotency_key=spec.job_id)
    )


def sms_job(spec: JobSpec, phone: str, message: str, user_id: str | None = None) -> NotificationInput:
    return NotificationInput(
        job=spec, sms=SmsMessage(phone=phone, message=message, idempotency_key=spec.job_id), sms_user_id=user_id
    )


def with_sms_slots(request: JobRequest, taken: bool) -> JobRequest:
    """The request with every SMS of its `then` chain marked as counted at intake (`taken`) or not."""
    if not isinstance(request, NotificationInput):
        return request
    then = request.job.then
    if then is not None and then.notification is not None:
        chained = with_sms_slots(then.notification, taken)
        assert isinstance(chained, NotificationInput)
        request = replace(request, job=replace(request.job, then=replace(then, notification=chained)))
    return replace(request, sms_slot_taken=taken) if request.sms is not None else request


def webhook_job(spec: JobSpec, url: str, data: Any) -> NotificationInput:
    return NotificationInput(job=spec, webhook=WebhookRequest(url=url, data=data, webhook_id=spec.job_id))


def cleanup_job(spec: JobSpec, task: CleanupTaskName) -> CleanupInput:
    return CleanupInput(job=spec, cleanup=CleanupTask(task=task))


def redrive_input(request: JobRequest, job_id: str) -> JobRequest:
    """A dead letter's first input, to start its job id again from the start."""
    if isinstance(request, NotificationInput) and request.batch_failure is not None:
        # A batch item's dead letter (workflows/batch.py): this time the item is sent, as a job.
        request = replace(request, batch_failure=None)
    # The same job again, sent now: an earlier delay or deliverAt has long passed.
    # A scheduled run's or a `then` follow-up's input has no job id (its workflow id is its job id).
    # A new run on today's workers: its spec names the lifecycle even if the dead letter's is older.
    spec = replace(
        request.job, job_id=request.job.job_id or job_id, delay_ms=0, deliver_at=None, lifecycle=LEAN_LIFECYCLE_INPUT
    )
    # Sent again: its SMS (and its then chain's) count again, taken when they are about to be sent.
    return with_sms_slots(replace(request, job=spec), taken=False)


def typed_email_job(spec: JobSpec, type: str, user_id: str, data: dict[str, Any]) -> NotificationInput:
    """A typed notification: the user and template, resolved and rendered when the email is sent."""
    # The HeraldUser search attribute: a user's notifications are listed by it (reports).
    spec = replace(spec, user_ref=user_ref(user_id, spec.tenant_scope))
    return NotificationInput(
        job=spec,
        typed=TypedEmail(type=type, user_id=user_id, data=data, idempotency_key=spec.job_id, scope=spec.tenant_scope),
    )
