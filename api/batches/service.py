"""Batches: checking a POST /notify/batch body, starting its one BatchWorkflow run, counting its items.

A batch is one BatchWorkflow run (workflows/batch.py) named by the batch id; each item is a job of its
own (`<batchId>-<n>`), read, cancelled and redriven through the job routes (api/jobs/batch_items.py).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import Priority

from api.batches.models import EmailBatch, SmsBatch, WebhookBatch
from api.core.errors import ApiError, validation_error, validation_errors
from api.core.metrics import jobs_accepted
from api.jobs.batch_items import Batch, closed_items, queried
from api.jobs.starter import check_limits, check_target, job_spec
from common.logs import log_event
from common.models import (
    BATCH_MEMO_KEY,
    TASK_QUEUES,
    BatchEmail,
    BatchInput,
    BatchSms,
    BatchWebhook,
    Phase,
    batch_item_id,
)
from common.settings import Settings
from common.temporal import RPC_TIMEOUT
from workflows.batch import BatchWorkflow


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
        for check in (
            functools.partial(check_limits, item, settings, f"items.{n}."),
            functools.partial(check_target, f"items.{n}.url", getattr(item, "url", None), settings),
        ):
            try:
                check()
            except ApiError as err:
                details += err.details
    if details:
        raise validation_errors(details)


def batch_input(batch_id: str, body: EmailBatch | SmsBatch | WebhookBatch, settings: Settings) -> BatchInput:
    spec = job_spec(batch_id, body.channel, "notify", body.job_options(), settings, None)
    batch = BatchInput(
        job=spec, slice_items=settings.batch_slice_items, slices_in_flight=settings.batch_slices_in_flight
    )
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
        BatchWorkflow.run,
        batch,
        id=spec.job_id,
        task_queue=TASK_QUEUES[spec.kind],
        memo={
            BATCH_MEMO_KEY: {
                "channel": spec.kind,
                "total": batch.total,
                "created_at": spec.created_at,
                "max_attempts": spec.retry.max_attempts,
            }
        },
        priority=Priority(priority_key=priority) if priority else Priority.default,
        static_summary=f"batch of {batch.total} {spec.kind} notifications",
        rpc_timeout=RPC_TIMEOUT,
    )
    log_event("batch.added", batch_id=spec.job_id, kind=spec.kind, items=batch.total, priority=priority)
    jobs_accepted.labels(type=spec.kind).inc(batch.total)  # each item is a job (count_accepted counts one)
    return StartedBatch(spec.job_id, [batch_item_id(spec.job_id, n) for n in range(batch.total)], handle)


async def batch_counts(batch: Batch) -> dict[str, int]:
    """Items per state, in the `/notifications/{id}` words."""
    items = await closed_items(batch)
    if items is not None:
        phases: dict[str, int] = {}
        for item in items:
            phases[item["phase"]] = phases.get(item["phase"], 0) + 1
    elif batch.description.status == WorkflowExecutionStatus.RUNNING:
        phases = await batch.handle.query("batch_counts", rpc_timeout=RPC_TIMEOUT)
    else:
        # Ended without completing (terminated, timed out): every item not final is failed.
        phases = await queried(batch, "batch_counts") or {}
        final = (Phase.COMPLETED.value, Phase.FAILED.value, Phase.CANCELLED.value)
        unfinished = int(batch.meta.get("total", 0)) - sum(int(phases.get(p, 0)) for p in final)
        phases = {p: int(phases.get(p, 0)) for p in final}
        phases[Phase.FAILED.value] += unfinished
    get = lambda phase: int(phases.get(phase.value, 0))  # noqa: E731
    return {
        "queued": get(Phase.QUEUED) + get(Phase.DELAYED),
        "processing": get(Phase.PROCESSING),
        "success": get(Phase.COMPLETED),
        "failed": get(Phase.FAILED),
        "cancelled": get(Phase.CANCELLED),
    }
