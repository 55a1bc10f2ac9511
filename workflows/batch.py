"""A batch of notifications on one channel (POST /notify/batch): one workflow for all its items, or,
for a batch larger than one run should hold, for one chunk of them (workflows/batch_chunks.py).

A workflow per item would cost each item a workflow's worth of persistence; here the items live
in this workflow's memory. Due items are sent in slices (`slice_items` per activity, each
activity sending its items concurrently: activities/batch.py), with at most `slices_in_flight`
slice activities running at once (a sliding window). Each item keeps its own attempt count, error
and retries: an item whose attempt failed and may be retried waits out the job's backoff (or the
Retry-After it was given) on a durable timer and goes out again in a later slice, alone or with
others due by then. So a thousand items cost some 20 activities and well under 200 history events.

An item that fails for good becomes a dead letter of its own at once: a short NotificationWorkflow
run with the item's job id, whose input says "already failed in batch" (`batch_failure`): it fails
immediately with the usual JobFailed details, so the DLQ, the stats and the status routes see it
like any failed job, and a redrive starts that id again without the marker, sending that item as
a normal job. Items are read through the queries below while the batch runs (api/jobs/batch_items.py) and
from its result once it has ended. `batch_cancel` cancels waiting items (one, or all of them);
items in flight finish. When every item is final, a batch of one run posts its `batch.completed`
callback (if it has a webhookUrl); a chunk reports its counts to its batch's run instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.batch import slice_activity
    from common.jobs import tenant_attributes, tenant_memo
    from common.logs import log_event
    from common.metrics import count_dead_letter, count_job_finished
    from common.models import (
        BATCH_GO_SIGNAL,
        CHUNK_DONE_SIGNAL,
        JOB_STATUS_KEY,
        JOB_TYPE_KEY,
        STATE_MEMO_KEY,
        TASK_QUEUES,
        BatchInput,
        BatchItemState,
        BatchResult,
        BatchSlice,
        ChunkDone,
        ItemOutcome,
        JobSpec,
        JobState,
        NotificationInput,
        Phase,
        SliceOutcomes,
        batch_item_id,
        item_message,
    )
    from common.names import BATCH_WORKFLOW, JOB_FAILED, NOTIFICATION_WORKFLOW

from workflows.callback import post_batch_callback
from workflows.failures import failure_message
from workflows.patches import CANCEL_STOPS_RETRIES, RATE_LIMITED_BATCH_SLICES

WAITING = (Phase.QUEUED, Phase.DELAYED)
MAX_BACKOFF = timedelta(hours=1)
# A slice activity whose worker died is retried (as a failed attempt of its items) this soon.
DEFAULT_HEARTBEAT_TIMEOUT_S = 30.0
# A chunk whose batch never released it (the API stopped before starting the batch's run, so no
# client was told the batch was accepted) ends after this, having sent nothing.
CHUNK_HOLD = timedelta(minutes=10)


@workflow.defn(name=BATCH_WORKFLOW)
class BatchWorkflow:
    @workflow.init
    def __init__(self, batch: BatchInput) -> None:
        # The items exist before the first update or query is handled (one may come with the run's
        # first task, before `run` begins: a cancel right after the start).
        self.batch: BatchInput | None = batch
        spec = batch.job
        now = workflow.now()
        due = spec.due_at(workflow.info().start_time)
        delayed = due is not None and due > now
        not_before = due.isoformat() if delayed and due else None
        self.items: list[BatchItemState] = [
            BatchItemState(
                phase=Phase.DELAYED if delayed else Phase.QUEUED,
                recipient=batch.recipient(n),
                updated_at=now.isoformat(),
                not_before=not_before,
            )
            for n in range(batch.total)
        ]
        self._due: dict[int, datetime] = dict.fromkeys(range(batch.total), due) if delayed and due else {}
        self._running: list[Any] = []  # the slice activities in flight
        # The whole batch was cancelled: an item whose attempt was in flight then is not retried.
        self._cancelled_all = False
        # A chunk (workflows/batch_chunks.py) sends nothing before its batch's run says go.
        self._released = False
        # A worker declined a slice of several items (its channel has a rate limit, which counts an
        # activity once: activities/rate_limit.py): from then on, one item per activity.
        self._one_by_one = False

    @workflow.run
    async def run(self, batch: BatchInput) -> BatchResult:
        spec = batch.job
        if batch.parent_id and not await self._wait_for_release():
            return self._result()
        try:
            await self._deliver()
        except asyncio.CancelledError:
            # Cancelled from outside the API (the Web UI, `temporal workflow cancel`): the waiting
            # items are cancelled; the slices in flight finish and record how their items went.
            self._cancelled_all = True
            self._cancel(self._waiting())
            await workflow.wait_condition(lambda: all(task.done() for task in self._running))
            for task in self._running:
                task.result()
        counts = self.counts()
        log_event("batch.done", log=workflow.logger, batch_id=spec.job_id, kind=spec.kind, first=batch.first, **counts)
        if batch.parent_id:
            await self._report_to_batch(batch.parent_id, counts)
        elif batch.callback_url:
            await post_batch_callback(batch.callback_url, spec.job_id, spec.kind, batch.total, counts)
        return self._result()

    def _result(self) -> BatchResult:
        assert self.batch is not None
        spec = self.batch.job
        return BatchResult(
            batch_id=spec.job_id,
            channel=spec.kind,
            created_at=spec.created_at,
            max_attempts=spec.retry.max_attempts,
            items=self.items,
        )

    # ---- a chunk of a chunked batch -----------------------------------------------------------
    async def _wait_for_release(self) -> bool:
        """Wait for the batch's go; False when it never came (the batch was never accepted)."""
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._released, timeout=CHUNK_HOLD, timeout_summary="batch's go")
        if self._released:
            return True
        now = workflow.now().isoformat()
        error = "the batch was never accepted: nothing sent"
        self.items = [replace(item, phase=Phase.CANCELLED, error=error, updated_at=now) for item in self.items]
        self._due.clear()
        return False

    @workflow.signal(name=BATCH_GO_SIGNAL)
    def release(self) -> None:
        self._released = True

    async def _report_to_batch(self, parent_id: str, counts: dict[str, int]) -> None:
        assert self.batch is not None
        try:
            await workflow.get_external_workflow_handle(parent_id).signal(
                CHUNK_DONE_SIGNAL, ChunkDone(first=self.batch.first, counts=counts)
            )
        except FailureError:
            # The batch's run is gone (terminated by an operator): nobody is left to tell.
            workflow.logger.warning(
                "batch %s did not take the counts of its items from %s", parent_id, self.batch.first
            )

    async def _deliver(self) -> None:
        """Until no item waits: send the due ones, sleep until the next are due."""
        while True:
            now = workflow.now()
            waiting = self._waiting()
            ready = [n for n in waiting if self._due.get(n, now) <= now]
            if ready:
                await self._send(ready)
                continue
            if not waiting:
                break
            # The earliest backoff (or delay) among the waiting items; a cancel of them all ends it early.
            wake = min(self._due[n] for n in waiting)
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: not self._waiting(), timeout=wake - now, timeout_summary="until the next items are due"
                )

    # ---- sending -----------------------------------------------------------------------
    async def _send(self, ready: list[int]) -> None:
        """Send these items in slices, at most `slices_in_flight` slices at a time."""
        assert self.batch is not None
        queue = list(ready)
        running = self._running
        while queue or running:
            while queue and len(running) < max(1, self.batch.slices_in_flight):
                size = 1 if self._one_by_one else max(1, self.batch.slice_items)
                # An item cancelled since the round began stays behind.
                part = [n for n in queue[:size] if self.items[n].phase in WAITING]
                del queue[:size]
                if part:
                    running.append(asyncio.ensure_future(self._send_slice(part)))
            if running:
                await workflow.wait_condition(lambda: any(task.done() for task in running))
                for task in [task for task in running if task.done()]:
                    running.remove(task)
                    # A declined slice's items go out first, one by one.
                    queue[:0] = task.result()

    async def _send_slice(self, part: list[int]) -> list[int]:
        """Send these items as one activity; the items back when the slice was declined (not sent)."""
        assert self.batch is not None
        batch, spec = self.batch, self.batch.job
        now = workflow.now().isoformat()
        before = {n: self.items[n] for n in part}
        for n in part:
            self._due.pop(n, None)
            self.items[n] = replace(
                self.items[n],
                phase=Phase.PROCESSING,
                attempts=self.items[n].attempts + 1,
                not_before=None,
                updated_at=now,
            )
        work = BatchSlice(
            batch_id=spec.job_id,
            # The items' numbers in the whole batch (a chunk's first is its first item's): their job ids.
            numbers=[batch.first + n for n in part],
            attempts=[self.items[n].attempts for n in part],
            max_attempts=spec.retry.max_attempts,
            emails=[batch.emails[n] for n in part] if batch.emails else [],
            sms=[batch.sms[n] for n in part] if batch.sms else [],
            webhooks=[batch.webhooks[n] for n in part] if batch.webhooks else [],
        )
        try:
            result: SliceOutcomes = await workflow.execute_activity_method(
                slice_activity(spec.kind),
                work,
                task_queue=TASK_QUEUES[spec.kind],
                # Every item may take its whole timeout; the heartbeat notices a dead worker sooner.
                start_to_close_timeout=timedelta(seconds=spec.attempt_timeout_s * len(part) + 60),
                heartbeat_timeout=timedelta(seconds=spec.heartbeat_timeout_s or DEFAULT_HEARTBEAT_TIMEOUT_S),
                # The items retry, each on its own schedule: a lost slice is one failed attempt of each.
                retry_policy=RetryPolicy(maximum_attempts=1),
                summary=f"items {batch.first + part[0]}..{batch.first + part[-1]} ({len(part)})",
            )
            if result.declined and workflow.patched(RATE_LIMITED_BATCH_SLICES):
                return self._declined(part, before)
            outcomes = result.items()
        except ActivityError as err:
            error = failure_message(err)
            if "heartbeat" in error.lower():
                error = "lost: the worker stopped heartbeating"
            outcomes = [ItemOutcome(n=batch.first + n, ok=False, error=error) for n in part]
        failed = [n for n in map(self._record, outcomes) if n is not None]
        for n in failed:
            await self._dead_letter(n)
        return []

    def _declined(self, part: list[int], before: dict[int, BatchItemState]) -> list[int]:
        """A slice a rate-limited worker did not send: its items as they were (due now, the attempt not
        counted), to be sent one per activity; cancelled instead if the whole batch was meanwhile."""
        assert self.batch is not None
        if not self._one_by_one:
            log_event("batch.one_by_one", log=workflow.logger, batch_id=self.batch.job.job_id, first=self.batch.first)
        self._one_by_one = True
        for n in part:
            self.items[n] = before[n]
        if self._cancelled_all:
            self._cancel(part)
            return []
        return part

    def _record(self, outcome: ItemOutcome) -> int | None:
        """An item's attempt outcome into its state; its number if it has now failed for good."""
        assert self.batch is not None
        spec, n = self.batch.job, outcome.n - self.batch.first
        item, now = self.items[n], workflow.now()
        if item.phase != Phase.PROCESSING:
            return None
        if outcome.ok:
            self.items[n] = replace(
                item,
                phase=Phase.COMPLETED,
                error=None,
                updated_at=now.isoformat(),
                result={
                    "summary": outcome.summary,
                    "provider_id": outcome.provider_id,
                    **({"provider": outcome.provider} if outcome.provider else {}),
                },
            )
            count_job_finished(spec.kind, Phase.COMPLETED.value)
            return None
        if not outcome.retryable or item.attempts >= spec.retry.max_attempts:
            self.items[n] = replace(item, phase=Phase.FAILED, error=outcome.error, updated_at=now.isoformat())
            count_job_finished(spec.kind, Phase.FAILED.value)
            return n
        if self._cancelled_all and workflow.patched(CANCEL_STOPS_RETRIES):
            # Its attempt failed after the batch was cancelled: cancelled, not retried (and so final).
            self.items[n] = replace(item, phase=Phase.CANCELLED, error=outcome.error, updated_at=now.isoformat())
            count_job_finished(spec.kind, Phase.CANCELLED.value)
            return None
        wait = timedelta(seconds=outcome.retry_after_s) if outcome.retry_after_s else self._backoff(item.attempts)
        self._due[n] = now + wait
        self.items[n] = replace(
            item,
            phase=Phase.DELAYED,
            error=outcome.error,
            updated_at=now.isoformat(),
            not_before=(now + wait).isoformat(),
        )
        return None

    def _backoff(self, attempts_done: int) -> timedelta:
        """The job's wait after its attempt `attempts_done`, as its RetryPolicy would wait."""
        assert self.batch is not None
        retry = self.batch.job.retry
        first = retry.first_wait()
        return min(first * (retry.coefficient ** (attempts_done - 1)), max(MAX_BACKOFF, first))

    async def _dead_letter(self, n: int) -> None:
        """The failed item as a failed run of its own job id (the DLQ lists it; a redrive sends it)."""
        assert self.batch is not None
        batch, spec, item = self.batch, self.batch.job, self.items[n]
        job_id = batch_item_id(spec.job_id, batch.first + n)
        state = JobState(
            job_id=job_id,
            kind=spec.kind,
            family=spec.family,
            phase=Phase.FAILED,
            max_attempts=spec.retry.max_attempts,
            created_at=spec.created_at,
            updated_at=item.updated_at,
            recipient=batch.recipient(n),
            attempts=item.attempts,
            error=item.error,
        )
        request = NotificationInput(
            job=replace(
                spec, job_id=job_id, recipient=batch.recipient(n), delay_ms=0, deliver_at=None, callback_url=None
            ),
            batch_failure=state,
            **_message(batch, n, job_id),
        )
        try:
            child = await workflow.start_child_workflow(
                NOTIFICATION_WORKFLOW,
                request,
                id=job_id,
                task_queue=TASK_QUEUES[spec.kind],
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                # The batch's tenant (none in a batch from before tenants: then nothing changes), so the
                # dead letter is its tenant's on every route, in the admin's filters and the Web UI's.
                memo={STATE_MEMO_KEY: state} | tenant_memo(spec.tenant),
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(JOB_TYPE_KEY, spec.kind),
                        SearchAttributePair(JOB_STATUS_KEY, Phase.FAILED.value),
                    ]
                    + tenant_attributes(spec.tenant)
                ),
                static_summary=f"dead letter of batch item {job_id}",
            )
            # It fails at once, by design; the batch does not wait for that (nor log it as unretrieved).
            child.add_done_callback(_seen)
        except WorkflowAlreadyStartedError:
            pass  # started before (the item's id was redriven meanwhile): nothing to add

    # ---- what the API reads and asks ----------------------------------------------------
    def _waiting(self) -> list[int]:
        return [n for n, item in enumerate(self.items) if item.phase in WAITING]

    @workflow.query(name="batch_item")
    def item(self, n: int) -> BatchItemState | None:
        return self.items[n] if 0 <= n < len(self.items) else None

    @workflow.query(name="batch_counts")
    def counts(self) -> dict[str, int]:
        counts = {phase.value: 0 for phase in Phase}
        for item in self.items:
            counts[item.phase.value] += 1
        return counts

    @workflow.update(name="batch_cancel")
    def cancel(self, n: int | None) -> dict[str, Any]:
        """Cancel item `n` (None: every waiting item); answers how many were cancelled and, for one
        item, its phase now."""
        if n is None:
            self._cancelled_all = True
        cancelled = self._cancel(self._waiting() if n is None else [n])
        return {"cancelled": cancelled, "phase": self.items[n].phase.value if n is not None else None}

    def _cancel(self, numbers: list[int]) -> int:
        cancelled = 0
        now = workflow.now().isoformat()
        for number in numbers:
            if self.items[number].phase in WAITING:
                self.items[number] = replace(self.items[number], phase=Phase.CANCELLED, not_before=None, updated_at=now)
                self._due.pop(number, None)
                count_job_finished(self.batch.job.kind if self.batch else "", Phase.CANCELLED.value)
                cancelled += 1
        return cancelled

    @cancel.validator
    def _valid_cancel(self, n: int | None) -> None:
        if n is not None and not 0 <= n < len(self.items):
            raise ValueError(f"no item {n} in this batch")


def _seen(child: Any) -> None:
    if not child.cancelled():
        child.exception()


def _message(batch: BatchInput, n: int, job_id: str) -> dict[str, Any]:
    if batch.emails:
        return {"email": item_message(batch.emails[n], job_id)}
    if batch.sms:
        return {"sms": item_message(batch.sms[n], job_id)}
    return {"webhook": item_message(batch.webhooks[n], job_id)}


def fail_as_batch_item(spec: JobSpec, state: JobState) -> ApplicationError:
    """NotificationWorkflow's run for a batch item that failed in its batch: the same end as a job
    that failed on its own (status attribute, memo, log, metric), so it is a dead letter like one."""
    workflow.upsert_search_attributes([JOB_STATUS_KEY.value_set(Phase.FAILED.value)])
    workflow.upsert_memo({STATE_MEMO_KEY: state})
    log_event(
        "dead_lettered",
        log=workflow.logger,
        job_id=state.job_id,
        kind=state.kind,
        attempts=state.attempts,
        error=state.error,
        batch=True,
    )
    count_dead_letter(state.kind)
    return ApplicationError(state.error or "failed", state, type=JOB_FAILED, non_retryable=True)
