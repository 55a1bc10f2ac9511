"""One notification: wait until it is due, send it on its channel, report how it went."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from activities.sms import SmsActivities
    from activities.webhook import WebhookActivities
    from common.models import DeliveryReceipt, NotificationInput

from workflows.job_tracking import TrackedJobWorkflow


@workflow.defn
class NotificationWorkflow(TrackedJobWorkflow):
    @workflow.run
    async def run(self, request: NotificationInput) -> DeliveryReceipt:
        return await self.job.run(request.job, lambda options: self._send(request, options))

    async def _send(self, request: NotificationInput, options: dict[str, Any]) -> DeliveryReceipt:
        if request.email:
            return await workflow.execute_activity_method(EmailActivities.send_email, request.email, **options)
        if request.sms:
            return await workflow.execute_activity_method(SmsActivities.send_sms, request.sms, **options)
        assert request.webhook, "a notification carries an email, an SMS or a webhook"
        return await workflow.execute_activity_method(WebhookActivities.deliver_webhook, request.webhook, **options)
