"""One report: wait until it is due, build it (activities/reports.py), report how it went.

A report is a job like any other (workflows/job_tracking.py): attempts and backoff, the DLQ, the
result callback (whose body then carries the report's `resultUrl`: the "ready" notification) and a
`then` follow-up. The API starts it under the id `report-<digest of reportType and userId>` with
the conflict policy USE_EXISTING, so identical requests while one runs all get this run.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.reports import ReportActivities
    from common.models import JobState, ReportInput
    from common.names import REPORT_WORKFLOW

from workflows.job_tracking import TrackedJobWorkflow


@workflow.defn(name=REPORT_WORKFLOW)
class ReportWorkflow(TrackedJobWorkflow):
    @workflow.run
    async def run(self, request: ReportInput) -> JobState:
        return await self.run_job(request.job, ReportActivities.build_report, request.report)
