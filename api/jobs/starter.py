"""Starting any job: a request turned into its job input, durably started. A 202 is answered only after this.

The one way in: a /jobs or /notify body, a typed notification, a `then` (follow_up), a schedule's job
(typed_request), a batch (api/batches/service.py builds its items' shared spec with job_spec) and a
redrive (common/jobs.py redrive_input) all become a job input here or in common/jobs.py, whose builders
the worker's schedules and the workflows' `then` share; start_job is the one function that starts a job.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.core.auth import CallerTenant, get_gateway, get_settings
from api.core.errors import validation_error, validation_errors
from api.core.idempotency import keyed_job_id
from api.core.metrics import count_accepted
from api.core.temporal import TemporalGateway
from api.jobs.models import (
    CleanupJob,
    EmailFields,
    EmailUser,
    JobOptions,
    SmsFields,
    SmsUser,
    TypedCleanupJob,
    TypedJobBody,
    TypedWebhookJob,
    WebhookFields,
)
from api.jobs.throttle import sms_slots
from common.destinations import BlockedDestination, check_url
from common.jobs import (
    JobRequest,
    cleanup_job,
    email_job,
    new_spec,
    sms_job,
    start_options,
    webhook_job,
    with_sms_slots,
)
from common.logs import log_event
from common.models import (
    Audience,
    CleanupInput,
    FollowUp,
    JobFamily,
    JobKind,
    JobSpec,
    JobState,
    NotificationInput,
    Phase,
    RetrySpec,
)
from common.settings import Settings
from common.temporal import RPC_TIMEOUT
from common.tenants import Tenant


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


def check_limits(body: JobOptions, settings: Settings, where: str = "") -> None:
    """The operator's field limits (HERALD_MAX_SUBJECT_CHARS, ..., at most the schema's ceilings), for
    every route, `then` and schedule that takes a message; `where` is the body's path (`job.`)."""
    limits: list[tuple[str, int, int]] = []  # field, limit, size
    if isinstance(body, EmailFields):
        limits += [
            ("subject", settings.max_subject_chars, len(body.subject)),
            ("body", settings.max_email_body_chars, len(body.body)),
        ]
    elif isinstance(body, SmsFields):
        limits += [("message", settings.max_sms_chars, len(body.message))]
    elif isinstance(body, WebhookFields) and settings.max_webhook_data_bytes is not None:
        size = len(json.dumps(body.data, ensure_ascii=False, separators=(",", ":")).encode())
        limits += [("data", settings.max_webhook_data_bytes, size)]
    unit = {"data": "bytes as JSON"}
    details = [
        {"field": where + name, "message": f"must be at most {limit} {unit.get(name, 'characters')}"}
        for name, limit, size in limits
        if size > limit
    ]
    if details:
        raise validation_errors(details)


def job_spec(
    job_id: str,
    kind: JobKind,
    family: JobFamily,
    options: JobOptions,
    settings: Settings,
    recipient: str | None,
    where: str = "",
    *,
    tenant: Tenant | None,
) -> JobSpec:
    """The spec of a job from its options; `where` is the options' path in the body (`then.`); `tenant`
    the caller's (None only where a job is nobody's, e.g. a benchmark's)."""
    check_limits(options, settings, where)
    check_target(f"{where}webhookUrl", options.webhookUrl, settings)
    spec = new_spec(
        job_id,
        kind,
        family,
        settings,
        retry=RetrySpec(max_attempts=options.attempts, backoff=options.backoff.type, delay_ms=options.backoff.delay),
        delay_ms=options.delay or 0,
        deliver_at=options.deliverAt.isoformat() if options.deliverAt else None,
        callback_url=options.webhookUrl,
        recipient=recipient,
        then=follow_up(options.then, family, settings, f"{where}then.", tenant) if options.then else None,
        tenant=tenant,
    )
    return replace(spec, audience=audience_of(kind, options))


def audience_of(kind: JobKind, body: JobOptions) -> Audience | None:
    """Whose preferences decide an email or SMS whose body names a `userId` (common/preferences.py)."""
    if isinstance(body, (EmailUser, SmsUser)) and body.userId:
        return Audience(user_id=body.userId, channel=kind, topic=body.topic, critical=body.critical)
    return None


def typed_request(
    job: TypedJobBody, family: JobFamily, settings: Settings, where: str, tenant: Tenant | None, job_id: str = ""
) -> NotificationInput | CleanupInput:
    """The input of a job given as `{"type": ..., ...}` (a schedule's job, a `then`), its URLs checked;
    `where` is its path in the body (`job.`, `then.`) for the 400's field."""
    if isinstance(job, TypedWebhookJob):
        check_target(f"{where}url", job.url, settings)
    return job_input(job_spec(job_id, job.type, family, job, settings, recipient_of(job), where, tenant=tenant), job)


def recipient_of(body: JobOptions) -> str | None:
    """Where a job's message goes (its status answers show it): an address, a number or a URL."""
    if isinstance(body, EmailFields):
        return body.to
    if isinstance(body, SmsFields):
        return body.phone
    if isinstance(body, WebhookFields):
        return body.url
    return None


def job_input(spec: JobSpec, body: JobOptions) -> NotificationInput | CleanupInput:
    """The input of a job whose body carries its message: an email's, SMS's or webhook's fields, or a
    cleanup's task (a /jobs or /notify body, a schedule's job, a `then`)."""
    if isinstance(body, EmailFields):
        return email_job(spec, body.to, body.subject, body.body)
    if isinstance(body, SmsFields):
        return sms_job(spec, body.phone, body.message, body.userId if isinstance(body, SmsUser) else None)
    if isinstance(body, WebhookFields):
        return webhook_job(spec, body.url, body.data)
    assert isinstance(body, (CleanupJob, TypedCleanupJob)), f"no message in a {type(body).__name__}"
    return cleanup_job(spec, body.task)


def follow_up(job: TypedJobBody, family: JobFamily, settings: Settings, where: str, tenant: Tenant | None) -> FollowUp:
    """A `then`, built and checked now, at the request: started by the job's workflow once it completed,
    as `<jobId>-then` (an empty job id here: the child takes its workflow id, as a schedule's run does)."""
    request = typed_request(job, family, settings, where, tenant)
    if isinstance(request, CleanupInput):
        return FollowUp(cleanup=request, priority=job.priority)
    return FollowUp(notification=request, priority=job.priority)


async def first_try(client: Client, workflow_id: str) -> WorkflowHandle | None:
    """The run an earlier try of a keyed POST started under `workflow_id` (keyed_job_id), or None."""
    handle = client.get_workflow_handle(workflow_id, result_type=JobState)
    try:
        await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return handle


async def start_job(
    client: Client,
    request: JobRequest,
    priority: int | None = None,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE,
    id_conflict_policy: WorkflowIDConflictPolicy = WorkflowIDConflictPolicy.UNSPECIFIED,
    keyed: bool = False,
) -> StartedJob:
    """Start the job; `keyed`: its id is its request's (keyed_job_id), so one already there is that
    request's first try (whose answer was lost): answered as that try was, nothing started."""
    spec = request.job
    start = start_options(request, priority)
    phase, initial = start.state.phase, start.state
    try:
        handle = await client.start_workflow(
            start.workflow,
            request,
            id=spec.job_id,
            task_queue=start.task_queue,
            id_reuse_policy=id_reuse_policy,
            id_conflict_policy=id_conflict_policy,
            memo=start.memo,
            search_attributes=start.search_attributes,
            priority=start.priority,
            static_summary=start.summary,
            static_details=start.details,
            rpc_timeout=RPC_TIMEOUT,
            # Started by name (common/jobs.py): every job workflow's result is its final JobState.
            result_type=JobState,
        )
    except WorkflowAlreadyStartedError:
        if not keyed:
            raise
        # The first try's start reached Temporal after the caller looked (first_try).
        return StartedJob(job_id=spec.job_id, phase=phase, handle=client.get_workflow_handle(spec.job_id))
    log_event(
        "job.added",
        job_id=spec.job_id,
        kind=spec.kind,
        family=spec.family,
        phase=phase.value,
        priority=priority,
        not_before=initial.not_before,
    )
    count_accepted(spec.kind, spec.tenant)
    return StartedJob(job_id=spec.job_id, phase=phase, handle=handle)


class JobStarter:
    """What a POST route needs to turn a valid body into a started job (injected with Depends)."""

    def __init__(
        self, gateway: TemporalGateway, settings: Settings, keyed_id: Callable[[str], str | None], tenant: Tenant
    ) -> None:
        self.gateway, self.settings, self.tenant = gateway, settings, tenant
        # The job id a request with an Idempotency-Key gets (keyed_job_id), by kind; None without one.
        self.keyed_id = keyed_id

    async def start(
        self,
        kind: JobKind,
        family: JobFamily,
        options: JobOptions,
        build: Callable[[JobSpec], NotificationInput | CleanupInput] | None = None,
    ) -> StartedJob:
        """Start the job `options` (the body) describes; `build` makes its input from its spec where the
        body alone does not say (a typed notification), job_input otherwise."""
        keyed_id = self.keyed_id(kind)
        # The spec (and its URL checks) before the client: bad input is a 400 even without Temporal.
        spec = job_spec(
            keyed_id or new_job_id(kind),
            kind,
            family,
            options,
            self.settings,
            recipient_of(options),
            tenant=self.tenant,
        )
        request = build(spec) if build else job_input(spec, options)
        client = await self.gateway.client()
        if keyed_id and (first := await first_try(client, keyed_id)) is not None:
            # A retry whose first try started the job: its answer again, and no second slot of the quota.
            return StartedJob(job_id=keyed_id, phase=start_options(request).state.phase, handle=first)
        # Every SMS the request creates (its own, its `then` chain's) takes a slot of its number's
        # hourly quota first, and of its user's where the body names one (api/jobs/throttle.py): over
        # HERALD_SMS_PER_HOUR, a 429 and no job. Marked taken, so the job's run does not take another.
        numbers = sms_numbers(request)
        user_id = request.sms_user_id if isinstance(request, NotificationInput) else None
        async with sms_slots(client, self.settings, numbers, user_id, scope=self.tenant.scope):
            request = with_sms_slots(request, taken=True)
            return await start_job(client, request, options.priority, keyed=keyed_id is not None)


async def get_job_starter(
    request: Request,
    gateway: Annotated[TemporalGateway, Depends(get_gateway)],
    settings: Annotated[Settings, Depends(get_settings)],
    tenant: CallerTenant,
) -> JobStarter:
    return JobStarter(gateway, settings, lambda kind: keyed_job_id(request, kind), tenant)


Jobs = Annotated[JobStarter, Depends(get_job_starter)]


def sms_numbers(request: NotificationInput | CleanupInput) -> list[str]:
    """The numbers a job and its `then` chain send SMS to, one per SMS."""
    numbers = []
    while request is not None:
        if isinstance(request, NotificationInput) and request.sms:
            numbers.append(request.sms.phone)
        follow = request.job.then
        request = follow.request if follow else None
    return numbers
