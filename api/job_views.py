"""Reads a job back from Temporal and answers in each route family's words.

The workflow keeps its state in its memo; describe returns it with the live retry state of the
pending activity (attempt number, last failure, next attempt time), so no worker is needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus

from api.errors import not_found
from api.temporal import RPC_TIMEOUT
from common.models import STATE_MEMO_KEY, Phase
from common.vocabulary import BULLMQ_STATUS, JOB_STATUS, NOTIFICATION_STATUS

MAX_ID_LENGTH = 255
_ENDED = {
    WorkflowExecutionStatus.TERMINATED: "terminated by an operator",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
}


@dataclass
class JobView:
    id: str
    state: dict[str, Any]
    phase: Phase
    attempts: int
    error: str | None
    next_attempt_at: str | None


async def load_job(client: Client, job_id: str) -> JobView:
    if len(job_id) > MAX_ID_LENGTH:
        raise not_found(job_id)
    description = await client.get_workflow_handle(job_id).describe(rpc_timeout=RPC_TIMEOUT)
    state = (await description.memo()).get(STATE_MEMO_KEY)
    if not isinstance(state, dict):
        raise not_found(job_id)  # a Temporal workflow, but not a Herald job (e.g. a callback)
    return _view(job_id, state, description)


def _view(job_id: str, state: dict[str, Any], description: WorkflowExecutionDescription) -> JobView:
    phase = Phase(state["phase"])
    attempts, error, next_attempt_at = state.get("attempts", 0), state.get("error"), None
    if phase.final:
        pass  # The workflow recorded how the job ended; that outranks how the run itself ended.
    elif description.status in _ENDED:
        phase, error = Phase.FAILED, _ENDED[description.status]
    elif description.status == WorkflowExecutionStatus.CANCELED:
        phase = Phase.CANCELLED
    elif description.status == WorkflowExecutionStatus.RUNNING and phase == Phase.PROCESSING:
        for pending in description.raw_description.pending_activities:
            started = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            # `attempt` is the attempt running now, or the next one while waiting out a backoff.
            attempts = max(attempts, pending.attempt if started else pending.attempt - 1)
            if pending.HasField("last_failure") and pending.last_failure.message:
                error = error or pending.last_failure.message
            if not started and pending.HasField("next_attempt_schedule_time"):
                phase = Phase.DELAYED
                next_attempt_at = pending.next_attempt_schedule_time.ToDatetime().isoformat() + "Z"
    elif phase == Phase.DELAYED:
        next_attempt_at = state.get("not_before")
    return JobView(id=job_id, state=state, phase=phase, attempts=attempts, error=error,
                   next_attempt_at=next_attempt_at)


def _camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def _extras(view: JobView) -> dict[str, Any]:
    """What every status answer adds: the attempt log and the result callback's outcome."""
    extras: dict[str, Any] = {"deliveries": _camel(view.state.get("deliveries") or [])}
    if view.state.get("callback"):
        extras["callback"] = _camel(view.state["callback"])
    return extras


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
    body: dict[str, Any] = {"id": view.id, "status": BULLMQ_STATUS[view.phase],
                            "attempts": view.attempts, "maxAttempts": view.state["max_attempts"]}
    if view.error and view.phase == Phase.FAILED:
        body["error"] = view.error
    return body


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
