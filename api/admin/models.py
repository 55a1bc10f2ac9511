"""The operator's answers: job counts by type and status, and the latest jobs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from api.core.models import DATE_TIME, Answer, absent_unless
from api.jobs.models import JobStatusWord
from common.models import JobKind


class StatusCounts(Answer):
    """How many jobs of one type are in each `/jobs/{id}/status` word, each job under its latest run."""

    queued: int = Field(ge=0, description="waiting for a worker")
    delayed: int = Field(
        ge=0, description="waiting out a `delay`, a `deliverAt`, the user's quiet hours or digest, or a retry backoff"
    )
    processing: int = Field(
        ge=0,
        description="being sent now, read as GET /jobs/{id}/status reads it: a worker has the job's workflow "
        "task (its first attempt runs inside it) or its send activity is started or scheduled. Exact up to "
        "200 running jobs that may be sending (the `queued` ones and the `delayed` ones whose wait is over); "
        "past that the answer is `approximate` and this is 0 (each counts as `queued` or `delayed`)",
    )
    completed: int = Field(ge=0)
    failed: int = Field(
        ge=0, description="failed jobs, dead letters and discarded ones alike (a redriven job counts under its new run)"
    )
    cancelled: int = Field(ge=0)


class Stats(Answer):
    counts: dict[JobKind, StatusCounts] = Field(description="every job type, each with every status word")
    dlq: int = Field(ge=0, description="dead letters: what GET /admin/dlq lists")
    deferred: int = Field(
        ge=0, description="jobs waiting now for the end of their user's quiet hours (among the `delayed` ones)"
    )
    digested: int = Field(ge=0, description="jobs waiting now in their user's open digest (among the `delayed` ones)")
    approximate: Literal[True] | SkipJsonSchema[None] = absent_unless(
        "only past 200 running jobs that may be sending (see `processing`), 2 000 running jobs that started "
        "`queued` or 2 000 that did not, or 5 000 failed runs kept: the counts are then estimated (see docs/api.md)"
    )


class RecentJob(Answer):
    jobId: str = Field(description="the job's id, also its Temporal workflow id")
    runId: str = Field(description="the Temporal run id of the job's latest run")
    type: JobKind
    status: JobStatusWord = Field(description="as GET /jobs/{id}/status reads it")
    createdAt: str = Field(json_schema_extra=DATE_TIME)
    finishedAt: str | SkipJsonSchema[None] = absent_unless("only once the run has closed: when", **DATE_TIME)
    tenant: str = Field(description="the job's tenant (one made before tenants: the default tenant)")


class RecentJobs(Answer):
    items: list[RecentJob] = Field(description="newest first, one per job id")
