"""The dead-letter queue for operators: list, redrive one or all, discard (admin token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query

from api.core.auth import Gateway, SettingsDep, TenantFilter, known_tenant, require_admin_token
from api.core.errors import errors
from api.dead_letters.models import DeadLetterFilter, DeadLetterItem, DeadLetterList, Discarded, Redriven, RedrivenAll
from api.dead_letters.service import DeadLetterQueue
from common.models import JobKind

router = APIRouter(prefix="/admin/dlq", tags=["admin"], dependencies=[Depends(require_admin_token)])

ADMIN = (401, 403, 502, 503)
SAY = {
    401: "`unauthorized`: no or wrong admin token",
    404: "`not_found`: no dead letter with that job id",
    409: "`callback_pending`: the job failed but its result callback is still being delivered",
}


async def get_dead_letters(gateway: Gateway, settings: SettingsDep) -> DeadLetterQueue:
    return DeadLetterQueue(await gateway.client(), settings.tenant_names()[0])


DeadLetters = Annotated[DeadLetterQueue, Depends(get_dead_letters)]


@router.get("", summary="Dead-lettered jobs, newest first", responses=errors(400, *ADMIN, say=SAY))
async def list_dead_letters(
    dlq: DeadLetters,
    tenant: TenantFilter,
    type: Annotated[JobKind | None, Query(description="only jobs of this type")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="items per page")] = 50,
    cursor: Annotated[str | None, Query(max_length=4096, description="`nextCursor` of the page before")] = None,
) -> DeadLetterList:
    page = await dlq.page(type, limit, cursor, tenant)
    return DeadLetterList(
        items=[
            DeadLetterItem(
                jobId=d.job_id,
                type=d.type,
                error=d.error,
                attempts=d.attempts,
                failedAt=d.failed_at,
                tenant=d.tenant or "",
            )
            for d in page.items
        ],
        nextCursor=page.next_cursor,
    )


@router.post("/retry", summary="Redrive every dead letter (of one type)", responses=errors(400, *ADMIN, say=SAY))
async def redrive_all(
    dlq: DeadLetters, settings: SettingsDep, body: Annotated[DeadLetterFilter | None, Body()] = None
) -> RedrivenAll:
    # A tenant the deployment does not have is a 400, as `?tenant=` is on the lists (not "0 redriven").
    tenant = known_tenant(settings, body.tenant) if body else None
    return RedrivenAll(redriven=await dlq.redrive_all(body.type if body else None, tenant))


@router.post(
    "/{job_id}/retry",
    status_code=202,
    summary="Redrive one dead letter: the same job id from the start",
    responses=errors(404, 409, *ADMIN, say=SAY),
)
async def redrive(job_id: str, dlq: DeadLetters) -> Redriven:
    await dlq.redrive(job_id)
    return Redriven(jobId=job_id, status="queued", statusUrl=f"/jobs/{job_id}/status")


@router.delete("/{job_id}", summary="Discard a dead letter", responses=errors(404, 409, *ADMIN, say=SAY))
async def discard(job_id: str, dlq: DeadLetters) -> Discarded:
    await dlq.discard(job_id)
    return Discarded(jobId=job_id, discarded=True)
