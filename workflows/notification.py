"""One notification: wait until it is due, send it on its channel, report how it went."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.email import EmailActivities
    from activities.sms import SmsActivities
    from activities.sms_quota import SmsQuotaActivities, SmsSlotRequest
    from activities.users import TypedEmailActivities
    from activities.webhook import WebhookActivities
    from common.models import JobState, NotificationInput, QuotaAnswer, SendInput
    from common.names import NOTIFICATION_WORKFLOW

from workflows.batch import fail_as_batch_item
from workflows.job_tracking import TrackedJobWorkflow
from workflows.patches import BATCH_DEAD_LETTER, SMS_QUOTA_AT_SEND

# One ask for a quota slot (an update-with-start): Temporal answers in well under a second.
SLOT_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name=NOTIFICATION_WORKFLOW)
class NotificationWorkflow(TrackedJobWorkflow):
    @workflow.run
    async def run(self, request: NotificationInput) -> JobState:
        # A batch item that failed in its batch (workflows/batch.py): only such runs have the field.
        if request.batch_failure is not None and workflow.patched(BATCH_DEAD_LETTER):
            self.job.state = request.batch_failure
            raise fail_as_batch_item(request.job, request.batch_failure)
        activity, message = _channel(request)
        take_slot = None
        # An SMS the API did not count at intake (a schedule's run, a redrive): it takes its quota slot
        # when it is about to be sent. Asked first thing, so a run that began before the patch (a
        # delayed job accepted by an API that counted it already) keeps the old branch.
        if request.sms is not None and not request.sms_slot_taken and workflow.patched(SMS_QUOTA_AT_SEND):
            take_slot = functools.partial(
                _take_sms_slot, request.sms.phone, request.sms_user_id, request.job.tenant_scope
            )
        return await self.run_job(request.job, activity, message, take_slot)


async def _take_sms_slot(phone: str, user_id: str | None, scope: str, ask: int) -> QuotaAnswer:
    info = workflow.info()
    # A local activity: no task on the SMS queue, whose rate limit is for sends.
    return await workflow.execute_local_activity_method(
        SmsQuotaActivities.take_sms_slot,
        # The tenant's quotas (its scope: "" in a run from before tenants, as then).
        SmsSlotRequest(phone=phone, user_id=user_id, token=f"{info.workflow_id}-{info.run_id}-{ask}", scope=scope),
        start_to_close_timeout=SLOT_TIMEOUT,
        # Until Temporal and an API process (which serves the quotas) answer: the SMS waits, never skips.
        retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)),
        summary="SMS quota slot",
    )


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
