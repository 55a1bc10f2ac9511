"""The baseline: the naive email job, one workflow running one activity with the default retry policy."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from bench.bare_activity import EmailRequest, send_email

TASK_QUEUE = "bench-email"


@workflow.defn
class SendEmailWorkflow:
    @workflow.run
    async def run(self, request: EmailRequest) -> str:
        return await workflow.execute_activity(send_email, request, start_to_close_timeout=timedelta(seconds=30))
