"""Deliver a job's result callback, or a batch's `batch.completed` one (a signed webhook), with a retry
policy of its own."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.webhook import WebhookActivities
    from common.logs import log_event
    from common.models import ATTEMPT_SIGNAL, TASK_QUEUES, AttemptRecord, CallbackState, WebhookRequest
    from common.names import CALLBACK_WORKFLOW
    from common.vocabulary import notification_counts

from workflows.failures import attempt_log, failure_cause, failure_message

# A receiver that is down for a while still gets its callback: 12 tries over about 2.2 h
# (10 s, 20 s, 40 s, ... then every 30 min).
CALLBACK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=30),
    maximum_attempts=12,
)


@workflow.defn(name=CALLBACK_WORKFLOW)
class CallbackWorkflow:
    def __init__(self) -> None:
        self.outcome: CallbackState | None = None

    @workflow.run
    async def run(self, request: WebhookRequest) -> CallbackState:
        self.outcome = CallbackState(url=request.url)
        try:
            receipt = await workflow.execute_activity_method(
                WebhookActivities.deliver_webhook,
                request,
                retry_policy=CALLBACK_RETRY,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(hours=4),
            )
            self.outcome.status = "delivered"
            self.outcome.attempts = max(self.outcome.attempts, len(receipt.deliveries))
        except ActivityError as err:
            self.outcome.status = "failed"
            self.outcome.error = failure_message(err)
            self.outcome.attempts = max(self.outcome.attempts, len(attempt_log(failure_cause(err))))
        return self.outcome

    @workflow.signal(name=ATTEMPT_SIGNAL)
    def attempt_finished(self, record: AttemptRecord) -> None:
        # How callbacks started before the attempt log travelled with the attempts counted them.
        if self.outcome is not None:
            self.outcome.attempts = max(self.outcome.attempts, record.attempt)


async def post_batch_callback(url: str, batch_id: str, channel: str, total: int, phases: Mapping[str, int]) -> None:
    """Post the one signed `batch.completed` callback of a batch whose items are all final, as a
    CallbackWorkflow child with its own retries; the batch's run ends once it is delivered or given up."""
    body = {
        "type": "batch.completed",
        "timestamp": workflow.now().isoformat(),
        "data": {"batchId": batch_id, "channel": channel, "total": total, "counts": notification_counts(phases)},
    }
    callback_id = f"{batch_id}-callback"
    outcome = await workflow.execute_child_workflow(
        CallbackWorkflow.run,
        WebhookRequest(url=url, data=body, webhook_id=callback_id),
        id=callback_id,
        task_queue=TASK_QUEUES["webhook"],
        static_summary=f"batch.completed callback of {batch_id}",
    )
    log_event(
        "batch.callback", log=workflow.logger, batch_id=batch_id, status=outcome.status, attempts=outcome.attempts
    )
