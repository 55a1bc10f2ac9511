"""Batches (POST /notify/batch, GET /batches/{id}) and their items as jobs.

A batch is one BatchWorkflow run (workflows/batch.py) named by the batch id; its items live in that
run, each with the job id `<batchId>-<n>` (n from 0, in item order). An item is read from its
batch: through a query while the batch runs (a worker answers it), from the run's result once it
has ended (cached: a closed run never changes). An item that failed is also a failed run of its
own job id (its dead letter), and a redriven one runs there as a normal job: the status routes
look for a workflow with the item's id first (api/job_views.py), and only then in its batch.
"""

from __future__ import annotations

import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import Priority
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ApiError, validation_error, validation_errors
from api.job_starter import check_limits, check_target, job_spec
from api.job_views import JobView
from api.metrics import jobs_accepted
from api.schemas import EmailBatch, SmsBatch, WebhookBatch
from api.temporal import RPC_TIMEOUT
from common.logs import log_event
from common.models import (
    BATCH_MEMO_KEY, TASK_QUEUES, BatchEmail, BatchInput, BatchSms, BatchWebhook, Phase, batch_item_id,
)
from common.settings import Settings
from common.vocabulary import JOB_STATUS
from workflows.batch import BatchWorkflow

BATCH_ID = re.compile(r"^batch-[0-9a-f]{20}$")
ITEM_ID = re.compile(r"^(batch-[0-9a-f]{20})-(0|[1-9][0-9]{0,4})$")
# Closed batches' item states kept per API process (a closed run never changes).
RESULTS_KEPT = 32
_ENDED = {
    WorkflowExecutionStatus.TERMINATED: "the batch was terminated by an operator",
    WorkflowExecutionStatus.TIMED_OUT: "the batch timed out",
    WorkflowExecutionStatus.FAILED: "the batch failed",
}


@dataclass
class StartedBatch:
    batch_id: str
    job_ids: list[str]
    handle: WorkflowHandle


def new_batch_id() -> str:
    return f"batch-{uuid.uuid4().hex[:20]}"


def check_batch(body: EmailBatch | SmsBatch | WebhookBatch, settings: Settings) -> None:
    """What the schema cannot say: the item count's setting, each webhook item's URL (SSRF)."""
    if len(body.items) > settings.max_batch_items:
        raise validation_error("items", f"at most {settings.max_batch_items} items in one batch")
    details: list[Any] = []
    for n, item in enumerate(body.items):
        # The operator's field limits (HERALD_MAX_SUBJECT_CHARS, ...) and, for webhooks, the SSRF rules.
        for check in (lambda: check_limits(item, settings, f"items.{n}."),
                      lambda: check_target(f"items.{n}.url", getattr(item, "url", None), settings)):
            try:
                check()
            except ApiError as err:
                details += err.details
    if details:
        raise validation_errors(details)


def batch_input(batch_id: str, body: EmailBatch | SmsBatch | WebhookBatch, settings: Settings) -> BatchInput:
    spec = job_spec(batch_id, body.channel, "notify", body.job_options(), settings, None)
    batch = BatchInput(job=spec, slice_items=settings.batch_slice_items,
                       slices_in_flight=settings.batch_slices_in_flight)
    if isinstance(body, EmailBatch):
        batch.emails = [BatchEmail(to=i.to, subject=i.subject, body=i.body) for i in body.items]
    elif isinstance(body, SmsBatch):
        batch.sms = [BatchSms(phone=i.phone, message=i.message) for i in body.items]
    else:
        batch.webhooks = [BatchWebhook(url=i.url, data=i.data) for i in body.items]
    return batch


async def start_batch(client: Client, batch: BatchInput, priority: int | None) -> StartedBatch:
    """Start the batch's run: once this returns, the batch and every item are durably recorded."""
    spec = batch.job
    handle = await client.start_workflow(
        BatchWorkflow.run, batch, id=spec.job_id, task_queue=TASK_QUEUES[spec.kind],
        memo={BATCH_MEMO_KEY: {"channel": spec.kind, "total": batch.total, "created_at": spec.created_at,
                               "max_attempts": spec.retry.max_attempts}},
        priority=Priority(priority_key=priority) if priority else Priority.default,
        static_summary=f"batch of {batch.total} {spec.kind} notifications",
        rpc_timeout=RPC_TIMEOUT,
    )
    log_event("batch.added", batch_id=spec.job_id, kind=spec.kind, items=batch.total, priority=priority)
    jobs_accepted.labels(type=spec.kind).inc(batch.total)  # each item is a job (count_accepted counts one)
    return StartedBatch(spec.job_id, [batch_item_id(spec.job_id, n) for n in range(batch.total)], handle)


# ---- reading ---------------------------------------------------------------------------------------
@dataclass
class Batch:
    id: str
    meta: dict[str, Any]
    description: WorkflowExecutionDescription
    handle: WorkflowHandle


async def find_batch(client: Client, batch_id: str) -> Batch | None:
    if not BATCH_ID.match(batch_id):
        return None
    handle = client.get_workflow_handle(batch_id)
    try:
        description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    meta = (await description.memo()).get(BATCH_MEMO_KEY)
    if not isinstance(meta, dict):
        return None
    return Batch(batch_id, meta, description, client.get_workflow_handle(batch_id, run_id=description.run_id))


_results: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()


async def _closed_items(batch: Batch) -> list[dict[str, Any]] | None:
    """The item states a completed batch run returned (None for a run that did not complete)."""
    if batch.description.status != WorkflowExecutionStatus.COMPLETED:
        return None
    run_id = batch.description.run_id
    if run_id not in _results:
        result = await batch.handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
        _results[run_id] = result.get("items", []) if isinstance(result, dict) else []
        while len(_results) > RESULTS_KEPT:
            _results.popitem(last=False)
    _results.move_to_end(run_id)
    return _results[run_id]


async def item_states(batch: Batch) -> list[dict[str, Any]] | None:
    return await _closed_items(batch)


async def item_state(batch: Batch, n: int) -> dict[str, Any]:
    items = await _closed_items(batch)
    if items is not None:
        return items[n]
    if batch.description.status == WorkflowExecutionStatus.RUNNING:
        state = await batch.handle.query("batch_item", n, rpc_timeout=RPC_TIMEOUT)
        if isinstance(state, dict):
            return state
    # A batch run that ended without completing (terminated, timed out): its items that were not
    # final never will be. What each had come to, a worker can still tell by replaying the run.
    state = await _queried(batch, "batch_item", n) or {}
    if state.get("phase") in (Phase.COMPLETED.value, Phase.FAILED.value, Phase.CANCELLED.value):
        return state
    ended = batch.description.close_time or batch.description.start_time
    return state | {"phase": Phase.FAILED.value, "error": _ENDED.get(batch.description.status, "the batch ended"),
                    "not_before": None, "updated_at": ended.isoformat()}


async def _queried(batch: Batch, query: str, *args: Any) -> Any:
    try:
        return await batch.handle.query(query, *args, rpc_timeout=RPC_TIMEOUT)
    except Exception:  # noqa: BLE001 - no worker, or a run that cannot answer: the caller falls back
        return None


async def load_item(client: Client, job_id: str) -> JobView | None:
    """A batch item as a job (None: `job_id` names no batch item)."""
    match = ITEM_ID.match(job_id)
    if not match:
        return None
    batch = await find_batch(client, match.group(1))
    n = int(match.group(2))
    if batch is None or n >= int(batch.meta.get("total", 0)):
        return None
    item = await item_state(batch, n)
    phase = Phase(item["phase"])
    state = {
        "job_id": job_id, "kind": batch.meta["channel"], "family": "notify", "phase": phase.value,
        "max_attempts": batch.meta.get("max_attempts", 3), "created_at": batch.meta["created_at"],
        "updated_at": item.get("updated_at") or batch.meta["created_at"], "recipient": item.get("recipient"),
        "attempts": item.get("attempts", 0), "not_before": item.get("not_before"), "result": item.get("result"),
        "error": item.get("error"), "deliveries": [], "batch_id": batch.id,
    }
    next_attempt_at = item.get("not_before") if phase == Phase.DELAYED else None
    return JobView(id=job_id, state=state, phase=phase, attempts=state["attempts"],
                   error=state["error"], next_attempt_at=next_attempt_at)


def history_id(job_id: str) -> str | None:
    """The workflow whose history records a batch item's changes (its batch's), for the live routes."""
    match = ITEM_ID.match(job_id)
    return match.group(1) if match else None


async def batch_counts(batch: Batch) -> dict[str, int]:
    """Items per state, in the `/notifications/{id}` words."""
    items = await _closed_items(batch)
    if items is not None:
        phases: dict[str, int] = {}
        for item in items:
            phases[item["phase"]] = phases.get(item["phase"], 0) + 1
    elif batch.description.status == WorkflowExecutionStatus.RUNNING:
        phases = await batch.handle.query("batch_counts", rpc_timeout=RPC_TIMEOUT)
    else:
        # Ended without completing (terminated, timed out): every item not final is failed.
        phases = await _queried(batch, "batch_counts") or {}
        final = (Phase.COMPLETED.value, Phase.FAILED.value, Phase.CANCELLED.value)
        unfinished = int(batch.meta.get("total", 0)) - sum(int(phases.get(p, 0)) for p in final)
        phases = {p: int(phases.get(p, 0)) for p in final}
        phases[Phase.FAILED.value] += unfinished
    get = lambda phase: int(phases.get(phase.value, 0))  # noqa: E731
    return {"queued": get(Phase.QUEUED) + get(Phase.DELAYED), "processing": get(Phase.PROCESSING),
            "success": get(Phase.COMPLETED), "failed": get(Phase.FAILED), "cancelled": get(Phase.CANCELLED)}


# ---- cancelling ------------------------------------------------------------------------------------
async def cancel_in_batch(client: Client, job_id: str) -> str | None:
    """Cancel a batch's waiting items (`job_id` a batch id) or one waiting item (an item's id).

    Returns the status URL to answer with, None when `job_id` is neither (the caller treats it as
    a job), or raises 409 when nothing is left to cancel.
    """
    match = ITEM_ID.match(job_id)
    if match:
        try:
            await client.get_workflow_handle(job_id).describe(rpc_timeout=RPC_TIMEOUT)
            return None  # a run of its own (a dead letter, or redriven): a job like any other
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        batch, n = await find_batch(client, match.group(1)), int(match.group(2))
        if batch is None or n >= int(batch.meta.get("total", 0)):
            return None
    else:
        batch, n = await find_batch(client, job_id), None
        if batch is None:
            return None
    if batch.description.status != WorkflowExecutionStatus.RUNNING:
        what = "job" if n is not None else "batch"
        raise ApiError(409, "not_cancellable", f"the {what} is already finished")
    try:
        answer = await batch.handle.execute_update("batch_cancel", n, rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # the batch ended meanwhile
            raise ApiError(409, "not_cancellable", "the batch is already finished") from exc
        raise
    if not answer.get("cancelled"):
        if n is None:
            raise ApiError(409, "not_cancellable", "no item of the batch is waiting any more")
        phase = Phase(answer.get("phase") or Phase.PROCESSING.value)
        if phase == Phase.PROCESSING:
            raise ApiError(409, "not_cancellable", "the job is being sent right now and can no longer be cancelled")
        raise ApiError(409, "not_cancellable", f"the job is already {JOB_STATUS[phase]}")
    return f"/jobs/{job_id}/status" if n is not None else f"/batches/{job_id}"
