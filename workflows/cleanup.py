"""One cleanup job: wait until it is due, remove the stale files, report what went."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.maintenance import MaintenanceActivities
    from common.models import ATTEMPT_SIGNAL, AttemptRecord, CleanupInput, CleanupReport, JobState

from workflows.job_tracking import JobTracker


@workflow.defn
class CleanupWorkflow:
    def __init__(self) -> None:
        self.job = JobTracker()

    @workflow.run
    async def run(self, request: CleanupInput) -> CleanupReport:
        return await self.job.run(
            request.job,
            lambda options: workflow.execute_activity_method(
                MaintenanceActivities.run_cleanup, request.cleanup, **options
            ),
        )

    @workflow.signal(name=ATTEMPT_SIGNAL)
    def attempt_finished(self, record: AttemptRecord) -> None:
        self.job.record_attempt(record)

    @workflow.query
    def state(self) -> JobState | None:
        return self.job.state
