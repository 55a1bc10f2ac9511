"""Batches: many notifications on one channel in one request, one workflow for them all (service.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.batches.models import BatchAccepted, BatchCancelled, BatchStatus, NotifyBatch
from api.batches.service import batch_counts, batch_input, check_batch, new_batch_id, start_batch
from api.core.auth import CallerTenant, Gateway, SettingsDep, require_client_key
from api.core.errors import ApiError, errors
from api.core.idempotency import keyed_job_id
from api.jobs.batch_items import Batch, cancel_batch, find_batch
from api.jobs.starter import first_try
from api.jobs.throttle import sms_slots
from common.models import batch_item_id
from common.tenants import Tenant

router = APIRouter(tags=["notifications"], dependencies=[Depends(require_client_key)])

SAY = {
    413: "`payload_too_large`: the body is larger than HERALD_MAX_BATCH_BODY_BYTES",
    429: "`rate_limited`: an SMS item's number is over HERALD_SMS_PER_HOUR (each item counts one); "
    "nothing of the batch is started",
}


@router.post(
    "/notify/batch",
    status_code=202,
    summary="Send many notifications on one channel",
    response_description="The batch and every item are durably recorded in Temporal",
    responses=errors(400, 401, 413, 429, 502, 503, say=SAY),
)
async def notify_batch(
    request: NotifyBatch, http: Request, gateway: Gateway, settings: SettingsDep, tenant: CallerTenant
) -> BatchAccepted:
    body = request.root
    # Checked before the client: bad input is a 400 even without Temporal.
    check_batch(body, settings)
    # With an Idempotency-Key, the batch id is the request's: a retry finds what its first try started.
    keyed_id = keyed_job_id(http, "batch")
    batch = batch_input(keyed_id or new_batch_id(), body, settings, tenant)
    client = await gateway.client()
    if keyed_id and await first_try(client, keyed_id) is not None:
        return accepted(keyed_id, batch.total)
    # Each SMS item takes a slot of its number's hourly quota (api/jobs/throttle.py), all or none: over
    # HERALD_SMS_PER_HOUR for any number, the whole batch is a 429 and nothing is started.
    async with sms_slots(client, settings, [item.phone for item in batch.sms], scope=tenant.scope):
        try:
            await start_batch(client, batch, body.priority, settings.batch_chunk_items)
        except WorkflowAlreadyStartedError:
            if not keyed_id:
                raise
    return accepted(batch.job.job_id, batch.total)


def accepted(batch_id: str, total: int) -> BatchAccepted:
    return BatchAccepted(
        batchId=batch_id, jobIds=[batch_item_id(batch_id, n) for n in range(total)], statusUrl=f"/batches/{batch_id}"
    )


@router.get(
    "/batches/{batch_id}",
    summary="A batch's items counted by state",
    response_description="The batch's counts; `done` once every item is final",
    responses=errors(401, 404, 502, 503),
)
async def batch_status(batch_id: str, gateway: Gateway, tenant: CallerTenant) -> BatchStatus:
    client = await gateway.client()
    batch = await _batch(client, batch_id, tenant)
    counts = await batch_counts(client, batch)
    done = counts["success"] + counts["failed"] + counts["cancelled"] == batch.total
    return BatchStatus(id=batch_id, channel=batch.meta["channel"], total=batch.total, counts=counts, done=done)


@router.post(
    "/batches/{batch_id}/cancel",
    status_code=202,
    summary="Cancel a batch's items not yet sent",
    response_description="The waiting items are cancelled; those being sent finish",
    responses=errors(401, 404, 409, 502, 503, say={409: "`not_cancellable`: no item of the batch is waiting"}),
)
async def cancel(batch_id: str, gateway: Gateway, tenant: CallerTenant) -> BatchCancelled:
    client = await gateway.client()
    cancelled = await cancel_batch(client, await _batch(client, batch_id, tenant))
    return BatchCancelled(batchId=batch_id, cancelled=cancelled, statusUrl=f"/batches/{batch_id}")


async def _batch(client: Client, batch_id: str, tenant: Tenant) -> Batch:
    batch = await find_batch(client, batch_id, tenant)
    if batch is None:
        raise ApiError(404, "not_found", f"no batch with id {batch_id!r}")
    return batch
