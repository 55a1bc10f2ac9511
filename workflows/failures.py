"""Turning a Temporal failure into the one-line reason a client reads."""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from common.failures import error_text
    from common.models import AttemptContext, AttemptRecord


def failure_cause(err: BaseException) -> BaseException:
    # An ActivityError only says "activity failed"; the reason is its cause (the last attempt's error).
    if isinstance(err, (ActivityError, ChildWorkflowError)) and err.cause:
        return err.cause
    return err


def failure_message(err: BaseException) -> str:
    return error_text(failure_cause(err))


def attempt_log(cause: BaseException, context: AttemptContext | None = None) -> list[AttemptRecord]:
    """The attempt log a failed send left: in its error's details, or for a timed-out attempt in
    its last heartbeat (plus a record of the attempt that timed out)."""
    if isinstance(cause, ApplicationError) and cause.details:
        return _records(cause.details[-1])
    if isinstance(cause, TimeoutError):
        log = _records(cause.last_heartbeat_details[0]) if cause.last_heartbeat_details else []
        if not log and context:
            log = list(context.earlier)
        now = workflow.now().isoformat()
        number = (log[-1].attempt + 1) if log else 1
        kind = cause.type.name.lower() if cause.type else "unknown"
        return log + [
            AttemptRecord(
                attempt=number, started_at=now, finished_at=now, succeeded=False, error=f"attempt timed out ({kind})"
            )
        ]
    return list(context.earlier) if context else []


def _records(carried: Any) -> list[AttemptRecord]:
    # Error and heartbeat details arrive without a type hint: the AttemptLog as a dict.
    if isinstance(carried, dict):
        return [AttemptRecord(**r) for r in carried.get("deliveries", [])]
    return []
