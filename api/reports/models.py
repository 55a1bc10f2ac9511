"""POST /reports' body, its answer, and the report document GET /reports/{jobId}/result serves."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from api.core.models import DATE_TIME, Answer, absent_unless
from api.jobs.models import JobOptions, JobStatusWord, UserId


class ReportCreate(JobOptions):
    userId: UserId = Field(description="whose report: the userId of the user's typed notifications")
    reportType: Literal["notification-history"] = Field(
        description="`notification-history`: the user's notifications and their states"
    )


class ReportAccepted(Answer):
    jobId: str = Field(
        description="`report-…`: the same for every request of this `userId` and `reportType`; "
        "while one runs, a request gets that one"
    )
    statusUrl: str = Field(description="`/jobs/{jobId}` (the report's state in the `/jobs/{id}` words)")


class ReportEntry(Answer):
    """One of the user's jobs, with its latest run's state as visibility holds it."""

    jobId: str
    type: str = Field(description="the job's type (`email`, `sms`, `webhook`, ...)")
    status: JobStatusWord = Field(
        description="in the `/jobs/{id}/status` words; a job being sent reads as it started (`queued` or `delayed`)"
    )
    createdAt: str = Field(json_schema_extra=DATE_TIME)
    finishedAt: str | SkipJsonSchema[None] = absent_unless("only once its run has closed", **DATE_TIME)
    error: str | SkipJsonSchema[None] = absent_unless("only when it `failed`: why")


class Report(Answer):
    """A report document, as GET /reports/{jobId}/result serves it."""

    jobId: str
    reportType: Literal["notification-history"]
    userId: str
    generatedAt: str = Field(json_schema_extra=DATE_TIME)
    total: int = Field(ge=0, description="how many jobs `notifications` lists")
    truncated: bool = Field(description="true when the user has more jobs than the report lists (the newest 1000)")
    counts: dict[JobStatusWord, int] = Field(description="how many of the listed jobs are in each status")
    notifications: list[ReportEntry] = Field(description="the user's jobs, newest first")
