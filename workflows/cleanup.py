"""One cleanup job: wait until it is due, remove the stale files, report what went."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.maintenance import MaintenanceActivities
    from common.models import CleanupInput, JobState
    from common.names import CLEANUP_WORKFLOW

from workflows.job_tracking import TrackedJobWorkflow


@workflow.defn(name=CLEANUP_WORKFLOW)
class CleanupWorkflow(TrackedJobWorkflow):
    @workflow.run
    async def run(self, request: CleanupInput) -> JobState:
        return await self.run_job(request.job, MaintenanceActivities.run_cleanup, request.cleanup)
