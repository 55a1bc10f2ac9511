"""The dead-letter queue's filter and answers (admin)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.core.models import DATE_TIME, Answer, Body
from api.jobs.models import JobStatusWord
from common.models import JobKind
from common.tenants import TENANT_PATTERN


class DeadLetterFilter(Body):
    type: JobKind | None = Field(None, description="only this type's")
    tenant: str | None = Field(None, pattern=TENANT_PATTERN, description="only this tenant's")


class DeadLetterItem(Answer):
    jobId: str = Field(description="the job's id; redrive and discard take it")
    type: JobKind | str = Field(description="the job's type")
    error: str | None = Field(description="why the job failed (its last attempt's error)")
    attempts: int = Field(description="attempts made before it gave up")
    failedAt: str | None = Field(description="when the job failed", json_schema_extra=DATE_TIME)
    tenant: str = Field(description="the job's tenant (a redrive keeps it)")


class DeadLetterList(Answer):
    items: list[DeadLetterItem] = Field(description="newest first")
    nextCursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class Redriven(Answer):
    jobId: str = Field(description="the same job id, running again from the start")
    status: JobStatusWord = Field(description="`queued`")
    statusUrl: str = Field(description="`/jobs/{jobId}/status`")


class Discarded(Answer):
    jobId: str
    discarded: Literal[True]


class RedrivenAll(Answer):
    redriven: int = Field(description="how many dead letters were started again")
