"""Reads a job back from Temporal and answers in each route family's words.

A job's workflow writes little itself (workflows/job_tracking.py): the API wrote the first
state into the memo at start, the final state is the run's result (or its failure's details),
and everything in between is read from what Temporal keeps anyway: describe's pending
workflow task (picked by a worker: processing), pending activity (its attempt, last failure,
next attempt time, and the attempt log in its heartbeat details) and close status. So no
worker is needed to answer, and a finished job costs one more read: its close event.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState, PendingWorkflowTaskState
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.core.errors import not_found
from api.jobs.batch_items import load_item
from api.jobs.models import JobView
from common.failures import error_text
from common.models import STATE_MEMO_KEY, Phase, WaitingOn, result_url
from common.temporal import RPC_TIMEOUT
from common.tenants import Tenant, owned_by
from common.vocabulary import BULLMQ_STATUS, FAILED_BY_ENDING, JOB_STATUS, NOTIFICATION_STATUS

MAX_ID_LENGTH = 255


async def load_job(client: Client, job_id: str, tenant: Tenant | None) -> JobView:
    """The job `job_id` of `tenant` (None: of any tenant, for the admin routes). Another tenant's job is a
    404 exactly as an unknown id is: its owner is read from the memo the describe brings anyway."""
    if len(job_id) > MAX_ID_LENGTH:
        raise not_found(job_id)
    try:
        description = await client.get_workflow_handle(job_id).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        # A batch item (`<batchId>-<n>`) without a run of its own lives in its batch's run.
        if item := await load_item(client, job_id, tenant):
            return item
        raise not_found(job_id) from exc
    memo = await description.memo()
    state = memo.get(STATE_MEMO_KEY)
    if not isinstance(state, dict) or not owned_by(tenant, memo):
        # A Temporal workflow but not a Herald job (e.g. a callback), or another tenant's job.
        raise not_found(job_id)
    if not state.get("job_id"):
        # A schedule's run: its memo was written with the schedule; the run itself started now.
        started = description.start_time.isoformat()
        state = state | {"job_id": job_id, "created_at": started, "updated_at": started}
    if description.status in (WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.FAILED):
        handle = client.get_workflow_handle(job_id, run_id=description.run_id)
        state = await _final_state(handle) or state
    pending = description.raw_description.pending_activities
    if pending and pending[0].heartbeat_details.payloads:
        # The attempt log the last failed attempt left in its heartbeat (activities/attempt_log.py).
        carried = await client.data_converter.decode(pending[0].heartbeat_details.payloads)
        if carried and isinstance(carried[0], dict) and carried[0].get("deliveries"):
            state = state | {"deliveries": carried[0]["deliveries"]}
    return _view(job_id, state, description, await _last_failure(client, pending[0]) if pending else None)


async def owns_run(client: Client, workflow_id: str, tenant: Tenant | None) -> bool:
    """Whether the run `workflow_id` exists and is `tenant`'s (one describe, its memo)."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return owned_by(tenant, await description.memo())


async def _final_state(handle: WorkflowHandle) -> dict[str, Any] | None:
    """The state a finished run ended with: its result, or its failure's details."""
    try:
        outcome = await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
    except WorkflowFailureError as failure:
        cause = failure.cause
        outcome = cause.details[0] if isinstance(cause, ApplicationError) and cause.details else None
    # Runs started before the lean lifecycle returned their receipt and kept the state in the memo.
    return outcome if isinstance(outcome, dict) and "phase" in outcome else None


async def _last_failure(client: Client, pending: PendingActivityInfo) -> str | None:
    """The message of a retrying send's last failure; Temporal keeps it encrypted (common/temporal.py)."""
    if not pending.HasField("last_failure"):
        return None
    failure = Failure()
    failure.CopyFrom(pending.last_failure)  # decoding works in place
    return error_text(await client.data_converter.decode_failure(failure))


async def running_phase(description: WorkflowExecutionDescription) -> Phase | None:
    """What GET /jobs/{id}/status says of a running job, read from its description alone (its memo,
    pending workflow task and pending activity): the rule GET /admin/stats counts `processing` by.
    None: not a Herald job's run."""
    state = (await description.memo()).get(STATE_MEMO_KEY)
    if not isinstance(state, dict) or "phase" not in state:
        return None
    return _view(description.id, state, description, None).phase


def _view(
    job_id: str, state: dict[str, Any], description: WorkflowExecutionDescription, last_failure: str | None
) -> JobView:
    phase = Phase(state["phase"])
    attempts, error, next_attempt_at = state.get("attempts", 0), state.get("error"), None
    if phase.final:
        pass  # The workflow recorded how the job ended; that outranks how the run itself ended.
    elif description.status in FAILED_BY_ENDING:
        phase, error = Phase.FAILED, FAILED_BY_ENDING[description.status]
    elif description.status == WorkflowExecutionStatus.CANCELED:
        phase = Phase.CANCELLED
    elif description.status == WorkflowExecutionStatus.RUNNING:
        live = description.raw_description
        if live.pending_activities:
            return _retrying(job_id, state, live.pending_activities[0], last_failure)
        if phase == Phase.DELAYED and state.get("not_before") and _now() < _parse(state["not_before"]):
            next_attempt_at = state["not_before"]
        elif (
            attempts or live.pending_workflow_task.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED
        ):
            # A worker is on it: the first attempt runs inside the workflow task (a local activity).
            phase, attempts = Phase.PROCESSING, max(attempts, 1)
        else:
            phase = Phase.QUEUED
    return JobView(id=job_id, state=state, phase=phase, attempts=attempts, error=error, next_attempt_at=next_attempt_at)


def _retrying(job_id: str, state: dict[str, Any], pending: PendingActivityInfo, error: str | None) -> JobView:
    """A job whose send runs as an activity under its retry policy: after a failed first attempt, or
    from attempt 1 on a channel with a rate limit. Its phase, by the pending attempt:
    - started (a worker has it): processing;
    - not started, with a next attempt time (waiting out a retry backoff): delayed, until then;
    - not started otherwise (scheduled, waiting in the task queue for a worker or for the channel's
      rate limit): queued."""
    deliveries = state.get("deliveries") or []
    done = max([d["attempt"] for d in deliveries], default=0)
    started = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    phase, next_attempt_at = Phase.PROCESSING if started else Phase.QUEUED, None
    if not started and pending.HasField("next_attempt_schedule_time"):
        phase = Phase.DELAYED
        next_attempt_at = pending.next_attempt_schedule_time.ToDatetime().isoformat() + "Z"
    return JobView(
        id=job_id,
        state=state,
        phase=phase,
        attempts=done + 1 if started else done,
        error=error or state.get("error"),
        next_attempt_at=next_attempt_at,
        server_backoff=phase == Phase.DELAYED,
    )


def not_waiting_reason(view: JobView) -> str | None:
    """Why POST /jobs/{id}/release cannot run the job now (None: it waits on a delay, a `deliverAt`, quiet
    hours, a digest or a retry backoff, each a timer of its run that a `release` signal ends)."""
    if view.phase != Phase.DELAYED:
        return f"the job is {JOB_STATUS[view.phase]}, not waiting"
    if view.server_backoff:
        # After an attempt lost with its worker, or a job accepted before every backoff was the run's own.
        return "the job waits out a retry backoff of its send's retry policy, kept by the Temporal server"
    if view.state.get("waiting_on") == WaitingOn.THROTTLE:
        return "the job waits for a slot of its SMS quota (HERALD_SMS_PER_HOUR), which a release does not override"
    return None


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def _now() -> datetime:
    return datetime.now(UTC)


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def _extras(view: JobView) -> dict[str, Any]:
    """What every status answer adds: the attempt log and the result callback's outcome."""
    # server_started_at is the attempt log's own bookkeeping (the backoff by the server's clock).
    # `interrupted` shows only where it is true (an attempt cut short by a crash).
    deliveries = [
        {k: v for k, v in d.items() if k != "server_started_at" and (k != "interrupted" or v)}
        for d in view.state.get("deliveries") or []
    ]
    extras: dict[str, Any] = {"deliveries": _camel(deliveries)} | _why(view)
    if view.state.get("callback"):
        extras["callback"] = _camel(view.state["callback"])
    if view.state.get("next"):
        extras["next"] = view.state["next"]  # the `then` follow-up's job id, once started
    return extras


def _why(view: JobView) -> dict[str, Any]:
    """What every status body carries about the rules applied to the job (DESIGN.md, "Preferences"):
    `decisions`, in order, `suppressedReason` once suppressed, and `digestId` once in a digest."""
    decisions = [{k: v for k, v in d.items() if v is not None} for d in view.state.get("decisions") or []]
    why: dict[str, Any] = {"decisions": decisions}
    if view.state.get("digest_id"):
        why["digestId"] = view.state["digest_id"]
    if view.phase == Phase.SUPPRESSED:
        why["suppressedReason"] = view.state.get("suppressed_reason")
    return why


def job_status_body(view: JobView) -> dict[str, Any]:
    """GET /jobs/{id}/status"""
    body = {
        "id": view.id,
        "type": view.state["kind"],
        "status": JOB_STATUS[view.phase],
        "attempts": view.attempts,
        "maxAttempts": view.state["max_attempts"],
        "result": _camel(view.state.get("result")),
        "error": view.error,
        "createdAt": view.state["created_at"],
        "updatedAt": view.state["updated_at"],
    }
    if view.next_attempt_at:
        body["nextAttemptAt"] = view.next_attempt_at
    return body | _extras(view)


def bullmq_body(view: JobView) -> dict[str, Any]:
    """GET /jobs/{id}"""
    body: dict[str, Any] = {
        "id": view.id,
        "status": BULLMQ_STATUS[view.phase],
        "attempts": view.attempts,
        "maxAttempts": view.state["max_attempts"],
    }
    if view.error and view.phase == Phase.FAILED:
        body["error"] = view.error
    if view.state["kind"] == "report" and view.phase == Phase.COMPLETED:
        body["resultUrl"] = result_url(view.id)
    if view.state.get("next"):
        body["next"] = view.state["next"]
    return body | _why(view)


def notification_body(view: JobView) -> dict[str, Any]:
    """GET /notifications/{id}"""
    body = {
        "id": view.id,
        "type": view.state["kind"],
        "recipient": view.state.get("recipient"),
        "status": NOTIFICATION_STATUS[view.phase],
        "attempts": view.attempts,
        "maxAttempts": view.state["max_attempts"],
        "createdAt": view.state["created_at"],
        "updatedAt": view.state["updated_at"],
    }
    if view.error:
        body["error"] = view.error
    return body | _extras(view)
