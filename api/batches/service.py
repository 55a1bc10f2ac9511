"""Batches: checking a POST /notify/batch body, starting its runs, counting its items.

A batch is one BatchWorkflow run (workflows/batch.py) named by the batch id or, above
HERALD_BATCH_CHUNK_ITEMS items, chunks of them under a ChunkedBatchWorkflow run of that name
(workflows/batch_chunks.py); each item is a job of its own (`<batchId>-<n>`), read, cancelled and
redriven through the job routes (api/jobs/batch_items.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.batches.models import EmailBatch, SmsBatch, WebhookBatch
from api.core.errors import ApiError, validation_error, validation_errors
from api.core.metrics import count_accepted
from api.jobs.batch_items import Batch, Items, all_items, closed_items, queried
from api.jobs.starter import check_limits, check_target, job_spec
from common.jobs import job_priority, tenant_attributes, tenant_memo
from common.logs import log_event
from common.models import (
    BATCH_MEMO_KEY,
    TASK_QUEUES,
    BatchEmail,
    BatchInput,
    BatchSms,
    BatchWebhook,
    ChunkedBatchInput,
    Phase,
    batch_chunk_id,
)
from common.settings import Settings
from common.temporal import RPC_TIMEOUT
from common.tenants import Tenant
from common.vocabulary import notification_counts
from workflows.batch import BatchWorkflow
from workflows.batch_chunks import ChunkedBatchWorkflow

# A chunk's items, as JSON, are at most this: its run's input stays well under Temporal's 2 MB payload limit.
CHUNK_BYTES = 1024 * 1024
# Chunk runs being started at once by one request.
PARALLEL_STARTS = 16


def new_batch_id() -> str:
    return f"batch-{uuid.uuid4().hex[:20]}"


def check_batch(body: EmailBatch | SmsBatch | WebhookBatch, settings: Settings) -> None:
    """What the schema cannot say: the item count's setting, each webhook item's URL (SSRF)."""
    if len(body.items) > settings.max_batch_items:
        raise validation_error("items", f"at most {settings.max_batch_items} items in one batch")
    details: list[Any] = []
    for n, item in enumerate(body.items):
        # The operator's field limits (HERALD_MAX_SUBJECT_CHARS, ...) and, for webhooks, the SSRF rules.
        for check in (
            functools.partial(check_limits, item, settings, f"items.{n}."),
            functools.partial(check_target, f"items.{n}.url", getattr(item, "url", None), settings),
        ):
            try:
                check()
            except ApiError as err:
                details += err.details
    try:
        check_target("webhookUrl", body.webhookUrl, settings)
    except ApiError as err:
        details += err.details
    if details:
        raise validation_errors(details)


def batch_input(
    batch_id: str, body: EmailBatch | SmsBatch | WebhookBatch, settings: Settings, tenant: Tenant | None
) -> BatchInput:
    # The tenant in the spec: its items' dead letters (workflows/batch.py) and their redrives record it too.
    spec = job_spec(batch_id, body.channel, "notify", body.job_options(), settings, None, tenant=tenant)
    batch = BatchInput(
        job=spec,
        slice_items=settings.batch_slice_items,
        slices_in_flight=settings.batch_slices_in_flight,
        callback_url=body.webhookUrl,
    )
    if isinstance(body, EmailBatch):
        batch.emails = [BatchEmail(to=i.to, subject=i.subject, body=i.body) for i in body.items]
    elif isinstance(body, SmsBatch):
        batch.sms = [BatchSms(phone=i.phone, message=i.message) for i in body.items]
    else:
        batch.webhooks = [BatchWebhook(url=i.url, data=i.data) for i in body.items]
    return batch


def chunk_size(batch: BatchInput, chunk_items: int) -> int:
    """Items per run: `chunk_items` (HERALD_BATCH_CHUNK_ITEMS), fewer where the largest item would take a
    chunk past CHUNK_BYTES."""
    items: list[Any] = [*batch.emails, *batch.sms, *batch.webhooks]
    largest = max(len(json.dumps(dataclasses.asdict(item), separators=(",", ":"))) for item in items)
    return max(1, min(chunk_items, CHUNK_BYTES // largest))


def chunks(batch: BatchInput, size: int) -> list[BatchInput]:
    """The batch's chunks of `size` items, each to be held until the batch's run releases it."""
    spec = batch.job

    def chunk(first: int) -> BatchInput:
        part = slice(first, first + size)
        return dataclasses.replace(
            batch,
            emails=batch.emails[part],
            sms=batch.sms[part],
            webhooks=batch.webhooks[part],
            first=first,
            parent_id=spec.job_id,
            callback_url=None,
        )

    return [chunk(first) for first in range(0, batch.total, size)]


async def start_batch(client: Client, batch: BatchInput, priority: int | None, chunk_items: int) -> WorkflowHandle:
    """Start the batch's runs: once this returns, the batch and every item are durably recorded.

    A batch that fits in one chunk is one BatchWorkflow run; a larger one, its chunks (held)
    and then its ChunkedBatchWorkflow run, which releases them (workflows/batch_chunks.py). A start
    that finds its run started already (a retry with the same Idempotency-Key) goes on to the next."""
    spec = batch.job
    size = chunk_size(batch, chunk_items)
    meta: dict[str, Any] = {
        "channel": spec.kind,
        "total": batch.total,
        "created_at": spec.created_at,
        "max_attempts": spec.retry.max_attempts,
    }
    options: dict[str, Any] = {
        "task_queue": TASK_QUEUES[spec.kind],
        "priority": job_priority(priority, spec.tenant),
        "rpc_timeout": RPC_TIMEOUT,
        # The batch's tenant on its run and every chunk's: the admin's filters and the Web UI's.
        "search_attributes": TypedSearchAttributes(tenant_attributes(spec.tenant)),
    }
    if batch.total <= size:
        handle = await client.start_workflow(
            BatchWorkflow.run,
            batch,
            id=spec.job_id,
            memo={BATCH_MEMO_KEY: meta} | tenant_memo(spec.tenant),
            static_summary=f"batch of {batch.total} {spec.kind} notifications",
            **options,
        )
    else:
        gate = asyncio.Semaphore(PARALLEL_STARTS)

        async def start_chunk(k: int, chunk: BatchInput) -> None:
            async with gate, _started_before_is_fine():
                await client.start_workflow(
                    BatchWorkflow.run,
                    chunk,
                    id=batch_chunk_id(spec.job_id, k),
                    memo=tenant_memo(spec.tenant),
                    static_summary=f"items {chunk.first}..{chunk.first + chunk.total - 1} of batch {spec.job_id}",
                    **options,
                )

        await asyncio.gather(*(start_chunk(k, chunk) for k, chunk in enumerate(chunks(batch, size))))
        handle = await client.start_workflow(
            ChunkedBatchWorkflow.run,
            ChunkedBatchInput(
                batch_id=spec.job_id,
                channel=spec.kind,
                total=batch.total,
                chunk_items=size,
                created_at=spec.created_at,
                callback_url=batch.callback_url,
            ),
            id=spec.job_id,
            memo={BATCH_MEMO_KEY: meta | {"chunk_items": size}} | tenant_memo(spec.tenant),
            static_summary=f"batch of {batch.total} {spec.kind} notifications in chunks of {size}",
            **options,
        )
    log_event("batch.added", batch_id=spec.job_id, kind=spec.kind, items=batch.total, priority=priority, chunk=size)
    count_accepted(spec.kind, spec.tenant, batch.total)  # each item is a job
    return handle


@contextlib.asynccontextmanager
async def _started_before_is_fine() -> AsyncIterator[None]:
    with contextlib.suppress(WorkflowAlreadyStartedError):
        yield


async def batch_counts(client: Client, batch: Batch) -> dict[str, int]:
    """Items per state, in the `/notifications/{id}` words, summed over the runs that hold them."""
    phases: Counter[str] = Counter()
    for counts in await asyncio.gather(*(_counts(items) for items in await all_items(client, batch))):
        phases.update(counts)
    return notification_counts(phases)


async def _counts(items: Items) -> dict[str, int]:
    """A run's items per Phase value."""
    closed = await closed_items(items)
    if closed is not None:
        return dict(Counter(item["phase"] for item in closed))
    if items.description.status == WorkflowExecutionStatus.RUNNING:
        counts: dict[str, int] = await items.handle.query("batch_counts", rpc_timeout=RPC_TIMEOUT)
        return counts
    # Ended without completing (terminated, timed out): every item not final is failed.
    phases = await queried(items, "batch_counts") or {}
    final = (Phase.COMPLETED.value, Phase.FAILED.value, Phase.CANCELLED.value)
    ended = {p: int(phases.get(p, 0)) for p in final}
    ended[Phase.FAILED.value] += items.total - sum(ended.values())
    return ended
