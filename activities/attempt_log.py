"""Keeps each job's attempt log across the attempts of its send, without a signal.

Temporal retries an activity on the server and writes only the last attempt to history. So
every attempt adds its own record to the log it inherited and hands the log on:
- a failed attempt records the log as its heartbeat details, which Temporal gives to the next
  attempt (and shows in describe, where the API reads it during a backoff), and raises its
  error with the log as the error's details, so the workflow has it when the send gives up;
- a successful attempt returns the log in its result (`SendResult.deliveries`).
A local activity (the job's first attempt) does the same except the heartbeat.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from common.failures import error_text
from common.logs import log_event
from common.metrics import FAILED, SUCCEEDED, count_attempt
from common.models import AttemptContext, AttemptLog, AttemptRecord, FailureDetail, SendInput, SendResult

# Enough history for an operator; the log travels in payloads and the memo, so it stays small.
MAX_DELIVERIES_KEPT = 25


class AttemptLogInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _AttemptLogInbound(next)


def attempt_context(input: ExecuteActivityInput) -> AttemptContext | None:
    message = input.args[0] if input.args else None
    return message.context if isinstance(message, SendInput) else None


class _AttemptLogInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        context = attempt_context(input)
        if context is None:  # not a send (nothing of Herald's today): nothing to log
            return await super().execute_activity(input)
        number = context.job_attempt(info.attempt)
        inherited = _inherited_log(info, context)
        started = _now()
        log_event("attempt.picked", job_id=info.workflow_id, activity=info.activity_type, attempt=number)
        try:
            result = await super().execute_activity(input)
        except Exception as exc:  # noqa: BLE001 - every failure is logged, then raised again
            raise self._failed(info, number, started, inherited, exc) from exc
        log_event("attempt.succeeded", job_id=info.workflow_id, attempt=number)
        count_attempt(SUCCEEDED)
        record = AttemptRecord(
            attempt=number, started_at=started, finished_at=_now(), succeeded=True,
            server_started_at=None if info.is_local else _iso(info.started_time),
            status_code=getattr(result, "status_code", None),
            response_excerpt=getattr(result, "response_excerpt", None),
        )
        if isinstance(result, SendResult):
            result.deliveries = _kept(inherited + [record])
        return result

    def _failed(self, info: activity.Info, number: int, started: str, inherited: list[AttemptRecord],
                exc: Exception) -> ApplicationError:
        """The same error, with the attempt log as its details (the far side's answer is in the log)."""
        application = exc if isinstance(exc, ApplicationError) else None
        detail = _failure_detail(application)
        record = AttemptRecord(
            attempt=number, started_at=started, finished_at=_now(), succeeded=False, error=error_text(exc),
            retryable=not (application and application.non_retryable),
            status_code=detail.status_code if detail else None,
            response_excerpt=detail.response_excerpt if detail else None,
            server_started_at=None if info.is_local else _iso(info.started_time),
        )
        log = _kept(inherited + [record])
        log_event("attempt.failed", job_id=info.workflow_id, attempt=number, error=record.error,
                  retryable=record.retryable)
        count_attempt(FAILED)
        if not info.is_local:
            # The next attempt starts from here; describe shows it meanwhile.
            activity.heartbeat(AttemptLog(log))
        return ApplicationError(
            record.error or "attempt failed", AttemptLog(log),
            type=application.type if application else type(exc).__name__,
            non_retryable=not record.retryable,
            next_retry_delay=application.next_retry_delay if application else None,
        )


def _inherited_log(info: activity.Info, context: AttemptContext) -> list[AttemptRecord]:
    if info.heartbeat_details:
        carried = info.heartbeat_details[0]
        # Decoded without a type hint: a dict of the AttemptLog dataclass.
        return [AttemptRecord(**r) for r in carried.get("deliveries", [])] if isinstance(carried, dict) else []
    return list(context.earlier)


def _failure_detail(exc: ApplicationError | None) -> FailureDetail | None:
    if exc and exc.details and isinstance(exc.details[0], FailureDetail):
        return exc.details[0]
    return None


def _kept(log: list[AttemptRecord]) -> list[AttemptRecord]:
    return log[-MAX_DELIVERIES_KEPT:]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
