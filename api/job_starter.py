"""Turns an accepted request into a durably started workflow. A 202 is answered only after this."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from temporalio.client import Client, WorkflowHandle
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from common.destinations import BlockedDestination, check_url
from api.errors import validation_error
from api.metrics import count_accepted
from api.schemas import JobOptions
from api.temporal import RPC_TIMEOUT, TemporalGateway
from common.logs import log_event
from common.models import (
    CHANNELS, JOB_STATUS_KEY, JOB_TYPE_KEY, STATE_MEMO_KEY, TASK_QUEUES, CallbackState, CleanupInput, CleanupTask,
    EmailMessage, JobFamily, JobKind, JobSpec, JobState, NotificationInput, Phase, RetrySpec, SmsMessage,
    WebhookRequest,
)
from common.settings import Settings
from common.summaries import job_details, job_summary
from workflows.cleanup import CleanupWorkflow
from workflows.notification import NotificationWorkflow



@dataclass
class StartedJob:
    job_id: str
    phase: Phase
    handle: WorkflowHandle


def new_job_id(kind: str) -> str:
    # Readable in the Web UI and unique; the kind prefix says what it is at a glance.
    return f"{kind}-{uuid.uuid4().hex[:20]}"


def check_target(field: str, url: str | None, settings: Settings) -> None:
    """Refuse at the door what the SSRF guard would refuse at send time anyway (a 400, not a failed job)."""
    if url is None:
        return
    try:
        check_url(url, settings.webhook_allow_hosts)
    except BlockedDestination as exc:
        raise validation_error(field, str(exc)) from exc


def job_spec(job_id: str, kind: JobKind, family: JobFamily, options: JobOptions, settings: Settings,
             recipient: str | None) -> JobSpec:
    check_target("webhookUrl", options.webhookUrl, settings)
    return JobSpec(
        job_id=job_id, kind=kind, family=family,
        created_at=datetime.now(timezone.utc).isoformat(),
        retry=RetrySpec(max_attempts=options.attempts, backoff=options.backoff.type,
                        delay_ms=options.backoff.delay),
        delay_ms=options.delay or 0,
        deliver_at=options.deliverAt.isoformat() if options.deliverAt else None,
        callback_url=options.webhookUrl,
        recipient=recipient,
        attempt_timeout_s=settings.send_timeout_seconds,
        retry_after_cap_s=settings.retry_after_cap_seconds,
        # A send's attempts heartbeat (activities/attempt_log.py); a cleanup's do not.
        heartbeat_timeout_s=(settings.send_heartbeat_timeout_seconds or None) if kind != "cleanup" else None,
        # A rate-limited channel sends every attempt as an activity: the limit only counts those.
        first_attempt_local=settings.rate_limit(CHANNELS[kind]) is None,
    )


@dataclass
class StartOptions:
    """What a job's workflow is started with besides its input, by the API and by a schedule's action."""

    workflow: Any
    task_queue: str
    memo: dict[str, Any]
    search_attributes: TypedSearchAttributes
    priority: Priority
    state: JobState
    # What the Temporal Web UI shows for the run (redacted: common/summaries.py).
    summary: str
    details: str


def start_options(request: NotificationInput | CleanupInput, priority: int | None = None) -> StartOptions:
    spec = request.job
    now = datetime.now(timezone.utc)
    due = spec.due_at(now)
    phase = Phase.DELAYED if due and due > now else Phase.QUEUED
    # The memo holds the state from the first moment, before any worker has seen the job.
    initial = JobState(
        job_id=spec.job_id, kind=spec.kind, family=spec.family, phase=phase,
        max_attempts=spec.retry.max_attempts, created_at=spec.created_at, updated_at=spec.created_at,
        recipient=spec.recipient, not_before=due.isoformat() if phase == Phase.DELAYED else None,
        callback=CallbackState(url=spec.callback_url) if spec.callback_url else None,
    )
    return StartOptions(
        workflow=CleanupWorkflow.run if isinstance(request, CleanupInput) else NotificationWorkflow.run,
        task_queue=TASK_QUEUES[spec.kind],
        memo={STATE_MEMO_KEY: initial},
        search_attributes=TypedSearchAttributes([SearchAttributePair(JOB_TYPE_KEY, spec.kind),
                                                 SearchAttributePair(JOB_STATUS_KEY, phase.value)]),
        priority=Priority(priority_key=priority) if priority else Priority.default,
        state=initial,
        summary=job_summary(request),
        details=job_details(request),
    )


async def start_job(client: Client, request: NotificationInput | CleanupInput, priority: int | None = None,
                    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE) -> StartedJob:
    spec = request.job
    start = start_options(request, priority)
    phase, initial = start.state.phase, start.state
    handle = await client.start_workflow(
        start.workflow,
        request,
        id=spec.job_id,
        task_queue=start.task_queue,
        id_reuse_policy=id_reuse_policy,
        memo=start.memo,
        search_attributes=start.search_attributes,
        priority=start.priority,
        static_summary=start.summary,
        static_details=start.details,
        rpc_timeout=RPC_TIMEOUT,
    )
    log_event("job.added", job_id=spec.job_id, kind=spec.kind, family=spec.family, phase=phase.value,
              priority=priority, not_before=initial.not_before)
    count_accepted(spec.kind)
    return StartedJob(job_id=spec.job_id, phase=phase, handle=handle)


class JobStarter:
    """What a POST route needs to turn a valid body into a started job (injected with Depends)."""

    def __init__(self, gateway: TemporalGateway, settings: Settings) -> None:
        self.gateway, self.settings = gateway, settings

    async def start(self, kind: JobKind, family: JobFamily, options: JobOptions, recipient: str | None,
                    build: Callable[[JobSpec], NotificationInput | CleanupInput]) -> StartedJob:
        # The spec (and its URL checks) before the client: bad input is a 400 even without Temporal.
        spec = job_spec(new_job_id(kind), kind, family, options, self.settings, recipient)
        return await start_job(await self.gateway.client(), build(spec), options.priority)


# ---- one builder per kind of job, shared by the /jobs and /notify families --------------------
def email_job(spec: JobSpec, to: str, subject: str, body: str) -> NotificationInput:
    return NotificationInput(job=spec, email=EmailMessage(to=to, subject=subject, body=body,
                                                          idempotency_key=spec.job_id))


def sms_job(spec: JobSpec, phone: str, message: str) -> NotificationInput:
    return NotificationInput(job=spec, sms=SmsMessage(phone=phone, message=message, idempotency_key=spec.job_id))


def webhook_job(spec: JobSpec, url: str, data: Any) -> NotificationInput:
    return NotificationInput(job=spec, webhook=WebhookRequest(url=url, data=data, webhook_id=spec.job_id))


def cleanup_job(spec: JobSpec, task: str) -> CleanupInput:
    return CleanupInput(job=spec, cleanup=CleanupTask(task=task))
