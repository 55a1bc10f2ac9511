"""The /jobs family: BullMQ-style jobs, with status in `/jobs/{id}/status` and `/jobs/{id}` words."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from temporalio.service import RPCError, RPCStatusCode

from api.core.auth import CallerTenant, Gateway, require_client_key
from api.core.errors import CREATE_ERRORS, SMS_CREATE_ERRORS, ApiError, errors
from api.jobs.batch_items import cancel_in_batch
from api.jobs.live import (
    MAX_WAIT_SECONDS,
    VERSION_PATTERN,
    Live,
    LiveStreamResponse,
    get_live,
    matches,
    read_status,
    versions,
)
from api.jobs.models import (
    BullMQJob,
    CancelAccepted,
    CleanupJob,
    EmailJob,
    JobAccepted,
    JobStatus,
    ReleaseAccepted,
    SmsJob,
)
from api.jobs.service import bullmq_body, load_job, not_waiting_reason
from api.jobs.starter import Jobs, StartedJob
from common.models import RELEASE_WAIT_SIGNAL, Phase, ReleaseSeen
from common.temporal import RPC_TIMEOUT
from common.vocabulary import JOB_STATUS

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[Depends(require_client_key)])

ACCEPTED = "The job is durably recorded in Temporal"
READ_ERRORS = errors(401, 404, 502, 503)


def _accepted(job: StartedJob) -> JobAccepted:
    return JobAccepted(jobId=job.job_id, status=JOB_STATUS[job.phase], statusUrl=f"/jobs/{job.job_id}/status")


@router.post(
    "/email", status_code=202, summary="Queue an email job", response_description=ACCEPTED, responses=CREATE_ERRORS
)
async def create_email_job(body: EmailJob, jobs: Jobs) -> JobAccepted:
    return _accepted(await jobs.start("email", "jobs", body))


@router.post(
    "/sms", status_code=202, summary="Queue an SMS job", response_description=ACCEPTED, responses=SMS_CREATE_ERRORS
)
async def create_sms_job(body: SmsJob, jobs: Jobs) -> JobAccepted:
    # Throttled (JobStarter.start, api/jobs/throttle.py): over HERALD_SMS_PER_HOUR for the number, a 429, no job.
    return _accepted(await jobs.start("sms", "jobs", body))


@router.post(
    "/cleanup", status_code=202, summary="Queue a cleanup job", response_description=ACCEPTED, responses=CREATE_ERRORS
)
async def create_cleanup_job(body: CleanupJob, jobs: Jobs) -> JobAccepted:
    return _accepted(await jobs.start("cleanup", "jobs", body))


LiveDep = Annotated[Live, Depends(get_live)]
_LIVE_503 = (
    "`temporal_unavailable`: Temporal is unreachable; or `too_many_streams`: this API process already "
    "serves HERALD_MAX_LIVE_STREAMS live streams and long polls (both with `Retry-After`)"
)
_ETAG = {
    "ETag": {"description": "the answer's version: pass it as `since` or `If-None-Match`", "schema": {"type": "string"}}
}
STATUS_ANSWERS = {
    200: {"headers": _ETAG},
    304: {"description": "Not Modified: the state is still the one `If-None-Match` names (no body)", "headers": _ETAG},
    **{
        status: answer | ({"description": _LIVE_503} if status == 503 else {})
        for status, answer in errors(400, 401, 404, 502, 503).items()
    },
}
EVENTS_ANSWERS = {
    200: {
        "description": "`text/event-stream`: an `event: status` whose `data` is the `GET /jobs/{id}/status` "
        "JSON and whose `id` is its ETag: the current state first, then one per change; a "
        "`: keep-alive` comment when idle; closed after a final state (or after an `event: "
        "error` whose `data` is an error body)",
        "content": {
            "text/event-stream": {
                "itemSchema": {
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                        "event": {"type": "string", "enum": ["status", "error"]},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {"$ref": "#/components/schemas/JobStatus"},
                        },
                        "id": {"type": "string"},
                    },
                }
            }
        },
    },
    204: {
        "description": "`Last-Event-ID` names the job's final state: nothing more will come (an EventSource "
        "stops reconnecting)"
    },
    # Errors are JSON, not the route's text/event-stream: named by content rather than by model.
    **{
        status: {k: v for k, v in answer.items() if k != "model"}
        | {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        | ({"description": _LIVE_503} if status == 503 else {})
        for status, answer in errors(401, 404, 502, 503).items()
    },
}


@router.get(
    "/{job_id}/status",
    summary="A job's state: queued, delayed, processing, completed, failed, cancelled",
    response_description="The job's state, attempt log and callback",
    responses=STATUS_ANSWERS,
    response_model_exclude_unset=True,
)
async def job_status(
    job_id: str,
    gateway: Gateway,
    live: LiveDep,
    request: Request,
    response: Response,
    tenant: CallerTenant,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="long poll: answer at the first change (relative to `since`, `If-None-Match`, or else the "
            "state at the request), or after this many seconds (at most 60)",
        ),
    ] = None,
    since: Annotated[
        str | None,
        Query(
            pattern=VERSION_PATTERN,
            description="with `wait`: the ETag of the last answer the client has; a different state answers at once",
        ),
    ] = None,
    if_none_match: Annotated[
        str | None,
        Header(description="ETags the client has: 304 while the state is one of them (with `wait`: after waiting)"),
    ] = None,
) -> JobStatus:
    if wait:
        snapshot, _ = await live.wait_for_change(
            request, job_id, tenant, wait, versions(since) or versions(if_none_match)
        )
    else:
        snapshot = await read_status(await gateway.client(), job_id, tenant)
    if matches(snapshot, versions(if_none_match)):
        return Response(status_code=304, headers={"ETag": snapshot.etag})  # type: ignore[return-value]
    response.headers["ETag"] = snapshot.etag
    return JobStatus.model_validate(snapshot.body)


@router.get(
    "/{job_id}/events",
    summary="A job's state as Server-Sent Events, until it is final",
    response_class=LiveStreamResponse,
    responses=EVENTS_ANSWERS,
)
async def job_events(
    job_id: str,
    live: LiveDep,
    tenant: CallerTenant,
    last_event_id: Annotated[
        str | None, Header(description="set by a reconnecting EventSource: the `id` of the last event it got")
    ] = None,
) -> Response:
    return await live.stream(job_id, tenant, last_event_id)


@router.get(
    "/{job_id}",
    summary="A job's state in BullMQ's words: waiting, delayed, active, completed, ...",
    response_description="The job's state in BullMQ's words",
    responses=READ_ERRORS,
    response_model_exclude_unset=True,
)
async def job(job_id: str, gateway: Gateway, tenant: CallerTenant) -> BullMQJob:
    return BullMQJob.model_validate(bullmq_body(await load_job(await gateway.client(), job_id, tenant)))


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    summary="Cancel a queued or delayed job",
    response_description="The cancel is recorded; the job reads `cancelled` shortly, nothing is sent",
    responses=errors(401, 404, 409, 502, 503),
)
async def cancel_job(job_id: str, gateway: Gateway, tenant: CallerTenant) -> CancelAccepted:
    client = await gateway.client()
    # A batch (its waiting items) or a batch item still in its batch: cancelled there (api/jobs/batch_items.py).
    if status_url := await cancel_in_batch(client, job_id, tenant):
        return CancelAccepted(jobId=job_id, cancelRequested=True, statusUrl=status_url)
    view = await load_job(client, job_id, tenant)
    if view.phase.final:
        raise ApiError(409, "not_cancellable", f"the job is already {JOB_STATUS[view.phase]}")
    if view.phase == Phase.PROCESSING:
        raise ApiError(409, "not_cancellable", "the job is being sent right now and can no longer be cancelled")
    await client.get_workflow_handle(job_id).cancel()
    return CancelAccepted(jobId=job_id, cancelRequested=True, statusUrl=f"/jobs/{job_id}/status")


@router.post(
    "/{job_id}/release",
    status_code=202,
    summary="Run a waiting job now (delay, deliverAt, quiet hours, digest, retry backoff)",
    response_description="The release is recorded; the job is sent now (its opt-outs still hold)",
    responses=errors(
        401,
        404,
        409,
        502,
        503,
        say={
            409: "`not_waiting`: the job is not waiting (queued, being sent, final), or waits on what a release "
            "cannot end (an SMS quota, a retry backoff the Temporal server keeps: after an attempt lost with "
            "its worker)"
        },
    ),
)
async def release_job(job_id: str, gateway: Gateway, tenant: CallerTenant) -> ReleaseAccepted:
    client = await gateway.client()
    view = await load_job(client, job_id, tenant)  # another tenant's job: a 404 as an unknown one
    if reason := not_waiting_reason(view):
        raise ApiError(409, "not_waiting", reason)
    try:
        # The wait it read: a release reaching the job after that wait ended is dropped (workflows/job_tracking.py).
        seen = ReleaseSeen(attempts=int(view.state.get("attempts") or 0))
        await client.get_workflow_handle(job_id).signal(RELEASE_WAIT_SIGNAL, seen, rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        # A batch item still in its batch's run (api/jobs/batch_items.py) has no run of its own to release.
        raise ApiError(409, "not_waiting", "a batch item waits with its batch; it cannot be released alone") from exc
    return ReleaseAccepted(jobId=job_id, released=True, statusUrl=f"/jobs/{job_id}/status")
