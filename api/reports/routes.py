"""Reports: POST /reports starts one (or finds the one in flight), GET /reports/{jobId}/result serves it.

A report is a job of the /jobs family (its state on every status route, in the `/jobs/{id}` words
on `GET /jobs/{id}` and in its callback). Its job id is `report-<digest of reportType and userId>`,
started with the conflict policy USE_EXISTING: while one runs for the same userId and reportType,
every request, concurrent ones included, gets that run, decided by Temporal itself, not a lookup
table here. Once it has closed, the id is free again (reuse policy ALLOW_DUPLICATE) and the next
request builds a new report under the same id, as a BullMQ jobId is reused once its job is gone:
`resultUrl` always serves the latest finished report of that user and type.
"""

from __future__ import annotations

import json
import re

from fastapi import APIRouter, Depends

from api.core.auth import CallerTenant, Gateway, SettingsDep, require_client_key
from api.core.errors import CREATE_ERRORS, ApiError, errors
from api.jobs.service import owns_run
from api.reports.models import Report, ReportAccepted, ReportCreate
from api.reports.service import start_report
from common.models import report_path

router = APIRouter(prefix="/reports", tags=["reports"], dependencies=[Depends(require_client_key)])

_REPORT_ID = re.compile(r"report-[0-9a-f]{32}")


@router.post(
    "",
    status_code=202,
    summary="Build a report; the same userId and reportType in flight give its jobId",
    response_description="The report job is durably recorded in Temporal (or one is already running)",
    responses=CREATE_ERRORS,
)
async def create_report(
    body: ReportCreate, gateway: Gateway, settings: SettingsDep, tenant: CallerTenant
) -> ReportAccepted:
    job_id = await start_report(gateway, body, settings, tenant)
    return ReportAccepted(jobId=job_id, statusUrl=f"/jobs/{job_id}")


@router.get(
    "/{job_id}/result",
    summary="A finished report's document",
    response_description="The latest finished report of this job id",
    responses=errors(401, 404, 503, say={404: "`not_found`: no report with that id, or not built yet"}),
    response_model_exclude_unset=True,
)
async def report_result(job_id: str, settings: SettingsDep, gateway: Gateway, tenant: CallerTenant) -> Report:
    path = report_path(settings.data_dir, job_id)
    missing = ApiError(404, "not_found", f"no finished report with job id {job_id!r}")
    if not _REPORT_ID.fullmatch(job_id) or not path.is_file():
        raise missing
    # The report job's run says whose it is (its memo; one describe): another tenant's is missing too.
    if not await owns_run(await gateway.client(), job_id, tenant):
        raise missing
    return Report.model_validate(json.loads(path.read_text()))
