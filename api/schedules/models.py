"""POST /schedules' body and the schedules' answers (also the admin routes')."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

from api.core.models import DATE_TIME, Answer, Body, absent_unless, errors_at
from api.jobs.models import TypedJob
from common.schedules import DEFAULT_TIMEZONE, validate_cron, validate_timezone


class ScheduleCreate(Body):
    cron: str = Field(
        max_length=256, description="five fields: minute hour day-of-month month day-of-week", examples=["0 9 * * 1-5"]
    )
    timezone: str = Field(
        DEFAULT_TIMEZONE,
        max_length=64,
        description="the IANA time zone the cron is read in",
        examples=["Europe/Berlin"],
    )
    job: TypedJob = Field(
        description="the job each run starts: `type` and that type's body and options, without `delay` or `deliverAt`"
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return validate_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return validate_timezone(value)

    @field_validator("job")
    @classmethod
    def _runs_when_due(cls, job: Any) -> Any:
        # Each run starts when the schedule fires; a delay would only shift the cron.
        errors = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "value_error", "not allowed in a schedule's job: the cron says when each run starts"
                ),
                loc=(name,),
                input=getattr(job, name),
            )
            for name in ("delay", "deliverAt")
            if getattr(job, name) is not None
        ]
        if errors:
            raise errors_at(errors)
        return job


class ScheduleCreated(Answer):
    scheduleId: str = Field(
        description="the schedule's id, also its Temporal Schedule id; each run is a job of "
        "its own with the id `<scheduleId>-<start time>`"
    )
    nextRunAt: str | None = Field(description="when the first run is due", json_schema_extra=DATE_TIME)


class ScheduleSummary(Answer):
    """A schedule as GET /admin/schedules lists it."""

    id: str
    cron: str = Field(description="five fields: minute hour day-of-month month day-of-week")
    timezone: str = Field(description="the IANA time zone the cron is read in")
    paused: bool
    builtin: bool = Field(
        description="true for the schedules Herald creates itself (`daily-cleanup`, "
        "`daily-log-cleanup`, `token-cleanup`)"
    )
    nextRunAt: str | None = Field(
        description="when the next run is due; null while paused", json_schema_extra=DATE_TIME
    )
    lastRunAt: str | SkipJsonSchema[None] = absent_unless(
        "only once it has run: when the latest run started", **DATE_TIME
    )
    lastJobId: str | SkipJsonSchema[None] = absent_unless(
        "only once it has run: the latest run's job id, readable on every status route"
    )
    tenant: str | SkipJsonSchema[None] = absent_unless(
        "only in GET /admin/schedules, on a client's schedule: the tenant that created it (its runs are that "
        "tenant's jobs)"
    )


class ScheduleDetail(ScheduleSummary):
    """A schedule with its job, GET /schedules/{id} and the admin actions' answer."""

    job: dict[str, Any] = Field(
        description="the job each run starts, as given to POST /schedules (`type`, that "
        "type's fields and options; a phone number normalised)"
    )


class ScheduleDeleted(Answer):
    scheduleId: str
    deleted: Literal[True] = Field(description="no more runs; a run already started goes on")


class ScheduleList(Answer):
    items: list[ScheduleSummary] = Field(description="the built-in schedules first, then the others by id")
