"""A report's start: the job id is `report-<digest of reportType and userId>`, started with USE_EXISTING
while one runs and ALLOW_DUPLICATE once it has closed (api/reports/routes.py says why)."""

from __future__ import annotations

from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from api.core.temporal import TemporalGateway
from api.jobs.starter import job_spec, start_job
from api.reports.models import ReportCreate
from common.models import ReportInput, ReportRequest, report_id
from common.settings import Settings


async def start_report(gateway: TemporalGateway, body: ReportCreate, settings: Settings) -> str:
    """Start the report (or find the one in flight for the same userId and reportType); its job id."""
    job_id = report_id(body.userId, body.reportType)
    # The spec (and its URL checks) before the client: bad input is a 400 even without Temporal.
    spec = job_spec(job_id, "report", "jobs", body, settings, None)
    request = ReportInput(job=spec, report=ReportRequest(user_id=body.userId, report_type=body.reportType))
    await start_job(
        await gateway.client(),
        request,
        body.priority,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return job_id
