"""One notification: wait until it is due, send it on its channel, report how it went."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from activities.sms import SmsActivities
    from activities.users import TypedEmailActivities
    from activities.webhook import WebhookActivities
    from common.models import JobState, NotificationInput, SendInput
    from common.names import NOTIFICATION_WORKFLOW

from workflows.batch import fail_as_batch_item
from workflows.job_tracking import TrackedJobWorkflow
from workflows.patches import BATCH_DEAD_LETTER


@workflow.defn(name=NOTIFICATION_WORKFLOW)
class NotificationWorkflow(TrackedJobWorkflow):
    @workflow.run
    async def run(self, request: NotificationInput) -> JobState:
        # A batch item that failed in its batch (workflows/batch.py): only such runs have the field.
        if request.batch_failure is not None and workflow.patched(BATCH_DEAD_LETTER):
            self.job.state = request.batch_failure
            raise fail_as_batch_item(request.job, request.batch_failure)
        activity, message = _channel(request)
        return await self.run_job(request.job, activity, message)


def _channel(request: NotificationInput) -> tuple[Callable[..., Any], SendInput]:
    if request.email:
        return EmailActivities.send_email, request.email
    if request.typed:
        # A typed notification (POST /notifications): only runs started with the field have it.
        return TypedEmailActivities.send_typed_email, request.typed
    if request.sms:
        return SmsActivities.send_sms, request.sms
    assert request.webhook, "a notification carries an email, an SMS or a webhook"
    return WebhookActivities.deliver_webhook, request.webhook
