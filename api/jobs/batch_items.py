"""Batches (POST /notify/batch, GET /batches/{id}) and their items as jobs.

A batch is one BatchWorkflow run (workflows/batch.py) named by the batch id, or, when larger than
HERALD_BATCH_CHUNK_ITEMS, a ChunkedBatchWorkflow run of that name over chunks of that many items,
each a BatchWorkflow run of its own (`<batchId>-chunk<k>`: workflows/batch_chunks.py); the memo says
which. Each item has the job id `<batchId>-<n>` (n from 0, in item order). An item is read from the
run that holds it: through a query while that runs (a worker answers it), from the run's result
once it has ended (cached: a closed run never changes). An item that failed is also a failed run of its
own job id (its dead letter), and a redriven one runs there as a normal job: the status routes
look for a workflow with the item's id first (api/jobs/service.py), and only then in its batch.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from api.core.errors import ApiError
from api.jobs.models import JobView
from common.models import BATCH_MEMO_KEY, DEFAULT_ATTEMPTS, Phase, batch_chunk_id
from common.temporal import RPC_TIMEOUT
from common.tenants import Tenant, owned_by
from common.vocabulary import JOB_STATUS

BATCH_ID = re.compile(r"^batch-[0-9a-f]{20}$")
ITEM_ID = re.compile(r"^(batch-[0-9a-f]{20})-(0|[1-9][0-9]{0,4})$")
# Closed batches' item states kept per API process (a closed run never changes).
RESULTS_KEPT = 32
_ENDED = {
    WorkflowExecutionStatus.TERMINATED: "the batch was terminated by an operator",
    WorkflowExecutionStatus.TIMED_OUT: "the batch timed out",
    WorkflowExecutionStatus.FAILED: "the batch failed",
}


# ---- reading ---------------------------------------------------------------------------------------
@dataclass
class Batch:
    id: str
    meta: dict[str, Any]
    description: WorkflowExecutionDescription
    handle: WorkflowHandle

    @property
    def total(self) -> int:
        return int(self.meta.get("total", 0))

    @property
    def chunk_items(self) -> int:
        """Items per run holding them: a chunked batch's chunk size (workflows/batch_chunks.py), else all."""
        return int(self.meta.get("chunk_items") or self.total or 1)

    @property
    def chunked(self) -> bool:
        return "chunk_items" in self.meta

    def holder_id(self, n: int) -> str:
        """The workflow whose run holds item `n` (and whose history records its changes)."""
        return batch_chunk_id(self.id, n // self.chunk_items) if self.chunked else self.id


@dataclass
class Items:
    """A run that holds a batch's items `first` .. `first + total - 1`: a batch of one run, or a chunk."""

    first: int
    total: int
    description: WorkflowExecutionDescription
    handle: WorkflowHandle


async def find_batch(client: Client, batch_id: str, tenant: Tenant | None) -> Batch | None:
    """The batch `batch_id` of `tenant` (None: of any); None for an unknown id and another tenant's
    batch alike. Its items and chunks are the batch's tenant's."""
    if not BATCH_ID.match(batch_id):
        return None
    handle = client.get_workflow_handle(batch_id)
    try:
        description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    memo = await description.memo()
    meta = memo.get(BATCH_MEMO_KEY)
    if not isinstance(meta, dict) or not owned_by(tenant, memo):
        return None
    return Batch(batch_id, meta, description, client.get_workflow_handle(batch_id, run_id=description.run_id))


async def items_of(client: Client, batch: Batch, n: int) -> Items:
    """The run that holds item `n`."""
    if not batch.chunked:
        return Items(0, batch.total, batch.description, batch.handle)
    first = n - n % batch.chunk_items
    chunk_id = batch.holder_id(n)
    description = await client.get_workflow_handle(chunk_id).describe(rpc_timeout=RPC_TIMEOUT)
    handle = client.get_workflow_handle(chunk_id, run_id=description.run_id)
    return Items(first, min(batch.chunk_items, batch.total - first), description, handle)


async def all_items(client: Client, batch: Batch) -> list[Items]:
    """Every run that holds the batch's items, in item order."""
    firsts = range(0, batch.total, batch.chunk_items) if batch.chunked else [0]
    return list(await asyncio.gather(*(items_of(client, batch, first) for first in firsts)))


_results: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()


async def closed_items(items: Items) -> list[dict[str, Any]] | None:
    """The item states a completed run returned (None for a run that did not complete)."""
    if items.description.status != WorkflowExecutionStatus.COMPLETED:
        return None
    run_id = items.description.run_id
    if run_id not in _results:
        result = await items.handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
        _results[run_id] = result.get("items", []) if isinstance(result, dict) else []
        while len(_results) > RESULTS_KEPT:
            _results.popitem(last=False)
    _results.move_to_end(run_id)
    return _results[run_id]


async def item_state(items: Items, n: int) -> dict[str, Any]:
    """Item `n` (its number in the run) as the run holding it tells."""
    closed = await closed_items(items)
    if closed is not None:
        return closed[n]
    if items.description.status == WorkflowExecutionStatus.RUNNING:
        state = await items.handle.query("batch_item", n, rpc_timeout=RPC_TIMEOUT)
        if isinstance(state, dict):
            return state
    # A batch run that ended without completing (terminated, timed out): its items that were not
    # final never will be. What each had come to, a worker can still tell by replaying the run.
    state = await queried(items, "batch_item", n) or {}
    if state.get("phase") in (Phase.COMPLETED.value, Phase.FAILED.value, Phase.CANCELLED.value):
        return state
    ended = items.description.close_time or items.description.start_time
    return state | {
        "phase": Phase.FAILED.value,
        "error": _ENDED.get(items.description.status, "the batch ended"),
        "not_before": None,
        "updated_at": ended.isoformat(),
    }


async def queried(items: Items, query: str, *args: Any) -> Any:
    try:
        return await items.handle.query(query, *args, rpc_timeout=RPC_TIMEOUT)
    except Exception:  # noqa: BLE001 - no worker, or a run that cannot answer: the caller falls back
        return None


async def load_item(client: Client, job_id: str, tenant: Tenant | None) -> JobView | None:
    """A batch item of `tenant`'s as a job (None: `job_id` names no batch item of the tenant's)."""
    match = ITEM_ID.match(job_id)
    if not match:
        return None
    batch = await find_batch(client, match.group(1), tenant)
    n = int(match.group(2))
    if batch is None or n >= batch.total:
        return None
    items = await items_of(client, batch, n)
    item = await item_state(items, n - items.first)
    phase = Phase(item["phase"])
    state = {
        "job_id": job_id,
        "kind": batch.meta["channel"],
        "family": "notify",
        "phase": phase.value,
        "max_attempts": batch.meta.get("max_attempts", DEFAULT_ATTEMPTS),
        "created_at": batch.meta["created_at"],
        "updated_at": item.get("updated_at") or batch.meta["created_at"],
        "recipient": item.get("recipient"),
        "attempts": item.get("attempts", 0),
        "not_before": item.get("not_before"),
        "result": item.get("result"),
        "error": item.get("error"),
        "deliveries": [],
        "batch_id": batch.id,
    }
    next_attempt_at = item.get("not_before") if phase == Phase.DELAYED else None
    return JobView(
        id=job_id,
        state=state,
        phase=phase,
        attempts=state["attempts"],
        error=state["error"],
        next_attempt_at=next_attempt_at,
    )


async def history_id(client: Client, job_id: str, tenant: Tenant | None) -> str | None:
    """The workflow whose history records a batch item's changes (its batch's, or its chunk's), for the
    live routes."""
    match = ITEM_ID.match(job_id)
    batch = await find_batch(client, match.group(1), tenant) if match else None
    return batch.holder_id(int(match.group(2))) if match and batch else None


# ---- cancelling ------------------------------------------------------------------------------------
async def cancel_in_batch(client: Client, job_id: str, tenant: Tenant | None) -> str | None:
    """Cancel a batch's waiting items (`job_id` a batch id) or one waiting item (an item's id).

    Returns the status URL to answer with, None when `job_id` is neither (the caller treats it as
    a job), or raises 409 when nothing is left to cancel.
    """
    match = ITEM_ID.match(job_id)
    if not match:
        batch = await find_batch(client, job_id, tenant)
        if batch is None:
            return None
        await cancel_batch(client, batch)
        return f"/batches/{job_id}"
    try:
        await client.get_workflow_handle(job_id).describe(rpc_timeout=RPC_TIMEOUT)
        return None  # a run of its own (a dead letter, or redriven): a job like any other
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    batch, n = await find_batch(client, match.group(1), tenant), int(match.group(2))
    if batch is None or n >= batch.total:
        return None
    items = await items_of(client, batch, n)
    if items.description.status != WorkflowExecutionStatus.RUNNING:
        raise ApiError(409, "not_cancellable", "the job is already finished")
    answer = await _cancel(items, n - items.first)
    if answer is None:
        raise ApiError(409, "not_cancellable", "the job is already finished")
    if not answer.get("cancelled"):
        phase = Phase(answer.get("phase") or Phase.PROCESSING.value)
        if phase == Phase.PROCESSING:
            raise ApiError(409, "not_cancellable", "the job is being sent right now and can no longer be cancelled")
        raise ApiError(409, "not_cancellable", f"the job is already {JOB_STATUS[phase]}")
    return f"/jobs/{job_id}/status"


async def cancel_batch(client: Client, batch: Batch) -> int:
    """Cancel every waiting item of the batch, in each run that holds some; answers how many were
    cancelled, or raises 409 when none was waiting."""
    running = [
        items for items in await all_items(client, batch) if items.description.status == WorkflowExecutionStatus.RUNNING
    ]
    if not running:
        raise ApiError(409, "not_cancellable", "the batch is already finished")
    answers = await asyncio.gather(*(_cancel(items, None) for items in running))
    cancelled = sum(int(answer.get("cancelled") or 0) for answer in answers if answer)
    if not cancelled:
        raise ApiError(409, "not_cancellable", "no item of the batch is waiting any more")
    return cancelled


async def _cancel(items: Items, n: int | None) -> dict[str, Any] | None:
    """The run's `batch_cancel` of item `n` (None: all); None when the run ended meanwhile."""
    try:
        answer: dict[str, Any] = await items.handle.execute_update("batch_cancel", n, rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return answer
