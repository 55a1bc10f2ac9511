"""Batches: many notifications on one channel in one request, one workflow for them all (service.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.batches.models import BatchAccepted, BatchStatus, NotifyBatch
from api.batches.service import batch_counts, batch_input, check_batch, new_batch_id, start_batch
from api.core.auth import Gateway, SettingsDep, require_client_key
from api.core.errors import ApiError, errors
from api.jobs.batch_items import find_batch
from api.jobs.throttle import sms_slots

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
async def notify_batch(request: NotifyBatch, gateway: Gateway, settings: SettingsDep) -> BatchAccepted:
    body = request.root
    # Checked before the client: bad input is a 400 even without Temporal.
    check_batch(body, settings)
    batch_id = new_batch_id()
    batch = batch_input(batch_id, body, settings)
    client = await gateway.client()
    # Each SMS item takes a slot of its number's hourly quota (api/jobs/throttle.py), all or none: over
    # HERALD_SMS_PER_HOUR for any number, the whole batch is a 429 and nothing is started.
    async with sms_slots(client, settings, [item.phone for item in batch.sms]):
        started = await start_batch(client, batch, body.priority)
    return BatchAccepted(batchId=started.batch_id, jobIds=started.job_ids, statusUrl=f"/batches/{started.batch_id}")


@router.get(
    "/batches/{batch_id}",
    summary="A batch's items counted by state",
    response_description="The batch's counts; `done` once every item is final",
    responses=errors(401, 404, 502, 503),
)
async def batch_status(batch_id: str, gateway: Gateway) -> BatchStatus:
    batch = await find_batch(await gateway.client(), batch_id)
    if batch is None:
        raise ApiError(404, "not_found", f"no batch with id {batch_id!r}")
    counts = await batch_counts(batch)
    total = int(batch.meta.get("total", 0))
    done = counts["success"] + counts["failed"] + counts["cancelled"] == total
    return BatchStatus(id=batch_id, channel=batch.meta["channel"], total=total, counts=counts, done=done)
