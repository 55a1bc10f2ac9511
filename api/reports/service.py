"""A report's start: the job id is `report-<digest of reportType and userId>`, started with USE_EXISTING
while one runs and ALLOW_DUPLICATE once it has closed (api/reports/routes.py says why)."""

from __future__ import annotations

from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from api.core.temporal import TemporalGateway
from api.jobs.starter import job_spec, start_job
from api.reports.models import ReportCreate
from common.models import ReportInput, ReportRequest, report_id
from common.settings import Settings
from common.tenants import Tenant


async def start_report(gateway: TemporalGateway, body: ReportCreate, settings: Settings, tenant: Tenant) -> str:
    """Start the report (or find the one in flight for the same userId and reportType of the tenant); its
    job id, in the tenant's scope: another tenant's report on the same userId is another job."""
    job_id = report_id(body.userId, body.reportType, tenant.scope)
    # The spec (and its URL checks) before the client: bad input is a 400 even without Temporal.
    spec = job_spec(job_id, "report", "jobs", body, settings, None, tenant=tenant)
    request = ReportInput(
        job=spec, report=ReportRequest(user_id=body.userId, report_type=body.reportType, scope=tenant.scope)
    )
    await start_job(
        await gateway.client(),
        request,
        body.priority,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return job_id
