"""Clients' recurring jobs: POST /schedules, GET and DELETE /schedules/{id}."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from api.core.auth import CallerTenant, Gateway, SettingsDep, require_client_key
from api.core.errors import CREATE_ERRORS, errors
from api.schedules.models import ScheduleCreate, ScheduleCreated, ScheduleDeleted, ScheduleDetail
from api.schedules.service import create_client_schedule, delete_schedule, describe_schedule, detail_body, summary_body

router = APIRouter(prefix="/schedules", tags=["schedules"], dependencies=[Depends(require_client_key)])

NOT_FOUND = "`not_found`: no schedule with that id"


@router.post(
    "",
    status_code=201,
    summary="Create a recurring job: `job` runs at every `cron` time in `timezone`",
    response_description="The schedule exists in Temporal; `Location` is `/schedules/{scheduleId}`",
    responses=CREATE_ERRORS,
)
async def create_schedule(
    body: ScheduleCreate, gateway: Gateway, settings: SettingsDep, response: Response, tenant: CallerTenant
) -> ScheduleCreated:
    description = await create_client_schedule(
        await gateway.client(), settings, body.cron, body.timezone, body.job, tenant
    )
    response.headers["Location"] = f"/schedules/{description.id}"
    summary = summary_body(description, {"cron": body.cron})
    return ScheduleCreated(scheduleId=description.id, nextRunAt=summary["nextRunAt"])


@router.get(
    "/{schedule_id}",
    summary="A schedule: its cron, time zone, state, next and last run, and job",
    response_description="The schedule",
    responses=errors(401, 404, 502, 503, say={404: NOT_FOUND}),
    response_model_exclude_unset=True,
)
async def get_schedule(schedule_id: str, gateway: Gateway, tenant: CallerTenant) -> ScheduleDetail:
    described = await describe_schedule(await gateway.client(), schedule_id, tenant)
    return ScheduleDetail.model_validate(detail_body(*described))


@router.delete(
    "/{schedule_id}",
    summary="Delete a schedule: no more runs (a run already started goes on)",
    response_description="The schedule is gone",
    responses=errors(
        401,
        404,
        409,
        502,
        503,
        say={404: NOT_FOUND, 409: "`builtin_schedule`: a built-in schedule, which only an operator can pause"},
    ),
)
async def remove_schedule(schedule_id: str, gateway: Gateway, tenant: CallerTenant) -> ScheduleDeleted:
    await delete_schedule(await gateway.client(), schedule_id, tenant)
    return ScheduleDeleted(scheduleId=schedule_id, deleted=True)
