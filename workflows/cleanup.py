"""One cleanup job: wait until it is due, remove the stale files, report what went."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.maintenance import MaintenanceActivities
    from common.models import CleanupInput, CleanupReport

from workflows.job_tracking import TrackedJobWorkflow


@workflow.defn
class CleanupWorkflow(TrackedJobWorkflow):
    @workflow.run
    async def run(self, request: CleanupInput) -> CleanupReport:
        return await self.job.run(
            request.job,
            lambda options: workflow.execute_activity_method(
                MaintenanceActivities.run_cleanup, request.cleanup, **options
            ),
        )
