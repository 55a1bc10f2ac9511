"""The baseline workflow: one activity, default retry policy, no memo, no search attributes."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from bench.bare_activity import BareInput, post

TASK_QUEUE = "bench-bare"


@workflow.defn(name="BenchBareWorkflow")
class BareWorkflow:
    @workflow.run
    async def run(self, request: BareInput) -> int:
        return await workflow.execute_activity(post, request, start_to_close_timeout=timedelta(seconds=30))
