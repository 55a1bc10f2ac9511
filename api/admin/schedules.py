"""Operators' view of every schedule: GET /admin/schedules, and trigger, pause, unpause one."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.core.auth import Gateway, SettingsDep, TenantFilter, require_admin_token
from api.core.errors import errors
from api.schedules.models import ScheduleDetail, ScheduleList
from api.schedules.service import list_schedules, pause_schedule, trigger_schedule

router = APIRouter(prefix="/admin/schedules", tags=["admin"], dependencies=[Depends(require_admin_token)])

ADMIN_ERRORS = errors(401, 403, 502, 503)
ONE_ERRORS = errors(401, 403, 404, 502, 503, say={404: "`not_found`: no schedule with that id"})
AFTER = "The schedule after the change"


@router.get(
    "",
    summary="Every schedule: the built-in ones and the clients'",
    response_description="The built-in schedules first, then the others by id (read from Temporal's "
    "visibility store, which may lag a moment behind a change)",
    responses=errors(400, 401, 403, 502, 503),
    response_model_exclude_unset=True,
)
async def all_schedules(gateway: Gateway, settings: SettingsDep, tenant: TenantFilter) -> ScheduleList:
    items = await list_schedules(await gateway.client(), settings.tenant_names()[0], tenant)
    return ScheduleList.model_validate({"items": items})


@router.post(
    "/{schedule_id}/trigger",
    summary="Run the schedule's job now (also while paused)",
    response_description="The schedule, whose `lastJobId` names the run just started",
    responses=ONE_ERRORS,
    response_model_exclude_unset=True,
)
async def trigger(schedule_id: str, gateway: Gateway) -> ScheduleDetail:
    return ScheduleDetail.model_validate(await trigger_schedule(await gateway.client(), schedule_id))


@router.post(
    "/{schedule_id}/pause",
    summary="Pause a schedule: no runs until it is unpaused",
    response_description=AFTER,
    responses=ONE_ERRORS,
    response_model_exclude_unset=True,
)
async def pause(schedule_id: str, gateway: Gateway) -> ScheduleDetail:
    return ScheduleDetail.model_validate(await pause_schedule(await gateway.client(), schedule_id, paused=True))


@router.post(
    "/{schedule_id}/unpause",
    summary="Resume a paused schedule from its next cron time",
    response_description=AFTER,
    responses=ONE_ERRORS,
    response_model_exclude_unset=True,
)
async def unpause(schedule_id: str, gateway: Gateway) -> ScheduleDetail:
    return ScheduleDetail.model_validate(await pause_schedule(await gateway.client(), schedule_id, paused=False))
