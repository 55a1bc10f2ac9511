"""The job lifecycle as it was before `LEAN_LIFECYCLE`: kept, unchanged, for runs started then.

Those runs may still be waiting on a timer or a retry when a new worker picks them up; a
worker must replay their history command for command, so this code must not change. It kept
the state in the memo (one upsert per change) and learned of each attempt by a signal.
When it can go, and how: workflows/patches.py and docs/versioning.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from common.logs import log_event
    from common.models import (
        JOB_STATUS_KEY,
        STATE_MEMO_KEY,
        TASK_QUEUES,
        AttemptRecord,
        CallbackState,
        JobSpec,
        JobState,
        Phase,
        WebhookRequest,
    )
    from common.names import JOB_FAILED

from workflows.callback import CallbackWorkflow
from workflows.failures import failure_message
from workflows.job_state import callback_body, send_options

# Enough history for an operator; the memo must stay small.
MAX_DELIVERIES_KEPT = 25


class JobTrackerV0:
    """The lifecycle of jobs started before the lean one (see the module docstring). Frozen."""

    def __init__(self) -> None:
        self.spec: JobSpec | None = None
        self.state: JobState | None = None

    # ---- state -------------------------------------------------------------------------
    def begin(self, spec: JobSpec) -> None:
        self.spec = spec
        self.state = JobState.initial(spec, Phase.QUEUED, _now())
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
        log_event(
            event,
            log=workflow.logger,
            job_id=self.state.job_id,
            kind=self.state.kind,
            attempts=self.state.attempts,
            error=self.state.error,
        )

    def _publish(self) -> None:
        assert self.state is not None
        workflow.upsert_memo({STATE_MEMO_KEY: self.state})
        workflow.upsert_search_attributes([JOB_STATUS_KEY.value_set(self.state.phase.value)])

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
            raise ApplicationError(message, type=JOB_FAILED, non_retryable=True) from err
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
        body = callback_body(state, _now())
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
