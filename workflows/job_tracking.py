"""What every Herald job workflow does around its one send.

A job keeps its state in its memo, so the API can read it with a describe call even when no
worker is running, and the Web UI shows it. Every change is one memo upsert.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any, Awaitable, Callable

from temporalio import workflow
from temporalio.workflow import ActivityCancellationType
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from common.models import (
        ATTEMPT_SIGNAL,
        STATE_MEMO_KEY,
        TASK_QUEUES,
        AttemptRecord,
        CallbackState,
        JobSpec,
        JobState,
        Phase,
        WebhookRequest,
    )
    from common.logs import log_event
    from common.vocabulary import family_status

from workflows.callback import CallbackWorkflow
from workflows.failures import failure_message

HERALD_STATUS = SearchAttributeKey.for_keyword("HeraldStatus")
# Enough history for an operator; the memo must stay small.
MAX_DELIVERIES_KEPT = 25


def send_options(spec: JobSpec) -> dict[str, Any]:
    """Timeouts and the declarative retry policy for a job's send activity."""
    attempt = timedelta(seconds=spec.attempt_timeout_s)
    retry_after_cap = timedelta(seconds=spec.retry_after_cap_s)
    waits = spec.retry.backoff_total() + retry_after_cap * (spec.retry.max_attempts - 1)
    return {
        # A send in flight cannot be taken back: on cancel, wait for the attempt's real outcome, so a
        # job never says "cancelled" about a message that went out.
        "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        "retry_policy": spec.retry.policy(),
        "start_to_close_timeout": attempt,
        # Every attempt plus every wait between attempts, with room for a Retry-After at the cap.
        "schedule_to_close_timeout": attempt * spec.retry.max_attempts + waits + timedelta(minutes=1),
    }


class JobTracker:
    def __init__(self) -> None:
        self.spec: JobSpec | None = None
        self.state: JobState | None = None

    # ---- state -------------------------------------------------------------------------
    def begin(self, spec: JobSpec) -> None:
        self.spec = spec
        self.state = JobState(
            job_id=spec.job_id, kind=spec.kind, family=spec.family, phase=Phase.QUEUED,
            max_attempts=spec.retry.max_attempts, created_at=spec.created_at,
            updated_at=_now(), recipient=spec.recipient,
            callback=CallbackState(url=spec.callback_url) if spec.callback_url else None,
        )
        self._publish()

    def update(self, **changes: Any) -> None:
        assert self.state is not None
        self.state = replace(self.state, updated_at=_now(), **changes)
        self._publish()

    def record_attempt(self, record: AttemptRecord) -> None:
        if self.state is None or self.state.phase.final:
            return
        deliveries = (self.state.deliveries + [record])[-MAX_DELIVERIES_KEPT:]
        self.update(
            attempts=max(self.state.attempts, record.attempt),
            deliveries=deliveries,
            error=self.state.error if record.succeeded else record.error,
        )

    def _log(self, event: str) -> None:
        assert self.state is not None
        # workflow.logger stays quiet during replay, so each stage is logged once.
        log_event(event, log=workflow.logger, job_id=self.state.job_id, kind=self.state.kind,
                  attempts=self.state.attempts, error=self.state.error)

    def _publish(self) -> None:
        workflow.upsert_memo({STATE_MEMO_KEY: self.state})
        workflow.upsert_search_attributes([HERALD_STATUS.value_set(self.state.phase.value)])

    # ---- the job's life ----------------------------------------------------------------
    async def run(self, spec: JobSpec, send: Callable[[dict[str, Any]], Awaitable[Any]]) -> Any:
        self.begin(spec)
        try:
            await self._wait_until_due()
            self.update(phase=Phase.PROCESSING, not_before=None)
            result = await send(send_options(spec))
        except ActivityError as err:
            if is_cancelled_exception(err):
                # Cancelled while waiting out a retry backoff: the activity was cancelled with us.
                self.update(phase=Phase.CANCELLED)
                self._log("job.cancelled")
                raise asyncio.CancelledError() from err
            message = failure_message(err)
            self.update(phase=Phase.FAILED, error=message)
            self._log("job.failed")
            await self._call_back()
            # The run itself fails too, so the Web UI and `temporal workflow list` show it as Failed.
            raise ApplicationError(message, type="JobFailed", non_retryable=True) from err
        except asyncio.CancelledError:
            self.update(phase=Phase.CANCELLED)
            self._log("job.cancelled")
            raise
        self.update(phase=Phase.COMPLETED, result=result, error=None)
        self._log("job.completed")
        await self._call_back()
        return result

    async def _wait_until_due(self) -> None:
        assert self.spec is not None
        # The server's clock, from the moment the job was started (time-skipping moves it too).
        due = self.spec.due_at(workflow.info().start_time)
        if due is None or due <= workflow.now():
            return
        self.update(phase=Phase.DELAYED, not_before=due.isoformat())
        # A durable timer: survives worker restarts, skipped instantly in time-skipping tests.
        await workflow.sleep(due - workflow.now())

    async def _call_back(self) -> None:
        """POST the final state to the job's webhookUrl, as a child workflow with its own retries."""
        if not (self.spec and self.spec.callback_url and self.state and self.state.callback):
            return
        state = self.state
        data: dict[str, Any] = {
            "jobId": state.job_id,
            "status": family_status(state.family, state.phase),
            "attempts": state.attempts,
        }
        if state.error and state.phase == Phase.FAILED:
            data["error"] = state.error
        body = {
            "type": "job.completed" if state.phase == Phase.COMPLETED else "job.failed",
            "timestamp": _now(),
            "data": data,
        }
        try:
            outcome: CallbackState = await workflow.execute_child_workflow(
                CallbackWorkflow.run,
                WebhookRequest(url=self.spec.callback_url, data=body, webhook_id=f"{state.job_id}-callback"),
                id=f"{state.job_id}-callback",
                task_queue=TASK_QUEUES["webhook"],
            )
        except ChildWorkflowError as err:
            outcome = CallbackState(url=self.spec.callback_url, status="failed", error=failure_message(err))
        self.update(callback=outcome)


def _now() -> str:
    return workflow.now().isoformat()


class TrackedJobWorkflow:
    """Base of the job workflows: what every job answers besides its own run method."""

    def __init__(self) -> None:
        self.job = JobTracker()

    @workflow.signal(name=ATTEMPT_SIGNAL)
    def attempt_finished(self, record: AttemptRecord) -> None:
        self.job.record_attempt(record)

    @workflow.query
    def state(self) -> JobState | None:
        return self.job.state
