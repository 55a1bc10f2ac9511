"""Tells a job's workflow how each attempt of its activity went.

Temporal retries an activity on the server and writes only the last attempt to history, so
without this the workflow (and the attempt log, and the gaps between attempts) would be blind
to every attempt but the last. The report is a signal to the job's own workflow.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from common.logs import log_event
from workflows.failures import error_text
from common.models import ATTEMPT_SIGNAL, AttemptRecord, DeliveryReceipt, FailureDetail


class AttemptReporter(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ReportingInbound(next)


class _ReportingInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        started = _now()
        log_event("attempt.picked", job_id=info.workflow_id, activity=info.activity_type, attempt=info.attempt)
        try:
            result = await super().execute_activity(input)
        except BaseException as exc:
            record = _failed(info.attempt, started, exc)
            log_event("attempt.failed", job_id=info.workflow_id, attempt=info.attempt, error=record.error,
                      retryable=record.retryable)
            await _report(info, record)
            raise
        log_event("attempt.succeeded", job_id=info.workflow_id, attempt=info.attempt)
        receipt = result if isinstance(result, DeliveryReceipt) else None
        await _report(info, AttemptRecord(
            attempt=info.attempt, started_at=started, finished_at=_now(), succeeded=True,
            status_code=receipt.status_code if receipt else None,
            response_excerpt=receipt.response_excerpt if receipt else None,
        ))
        return result


def _failed(attempt: int, started: str, exc: BaseException) -> AttemptRecord:
    detail = None
    if isinstance(exc, ApplicationError) and exc.details and isinstance(exc.details[0], FailureDetail):
        detail = exc.details[0]
    return AttemptRecord(
        attempt=attempt, started_at=started, finished_at=_now(), succeeded=False,
        error=error_text(exc),
        retryable=not (isinstance(exc, ApplicationError) and exc.non_retryable),
        status_code=detail.status_code if detail else None,
        response_excerpt=detail.response_excerpt if detail else None,
    )


async def _report(info: activity.Info, record: AttemptRecord) -> None:
    # Best effort: the send already happened (or failed); a lost report must not fail the job.
    try:
        handle = activity.client().get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
        await handle.signal(ATTEMPT_SIGNAL, record)
    except Exception as exc:  # noqa: BLE001
        activity.logger.warning("could not report attempt %s of %s: %s", record.attempt, info.workflow_id, exc)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
