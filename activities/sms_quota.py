"""Taking an SMS's quota slots from a job's run (workflows/notification.py): for the SMS the API did not
count at intake (a schedule's run, a redrive). The update-with-start the API does (common/sms_quota.py),
through the worker's client; the workflow waits out a refusal on a durable timer and asks again."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity
from temporalio.client import Client

from common.logs import log_event
from common.models import QuotaAnswer, QuotaRequest
from common.settings import Settings
from common.sms_quota import WINDOW, quota_key, release_on, reserve_on
from common.summaries import mask_phone

TAKE_SMS_SLOT = "take_sms_slot"


@dataclass
class SmsSlotRequest:
    phone: str
    # Unique per try of the job's run (the workflow numbers them): the updates' ids, so an activity
    # retry does not take a slot twice.
    token: str
    user_id: str | None = None
    # The job's tenant scope (common/tenants.py): its tenant's quotas.
    scope: str = ""


class SmsQuotaActivities:
    def __init__(self, settings: Settings, client: Client | None) -> None:
        self.settings, self.client = settings, client

    @activity.defn(name=TAKE_SMS_SLOT)
    async def take_sms_slot(self, request: SmsSlotRequest) -> QuotaAnswer:
        """A slot on the number's quota and, with a user, on the user's: both or neither. Refused: when
        enough slots free, by the quota's clock (HERALD_SMS_PER_HOUR=0: always granted, nothing counted)."""
        limit = self.settings.sms_per_hour
        if not limit:
            return QuotaAnswer(granted=True, used=0)
        assert self.client is not None, "the worker's client reserves the slots"
        keys = [quota_key("phone", request.phone, request.scope)]
        if request.user_id is not None:
            keys.append(quota_key("user", request.user_id, request.scope))
        granted: list[str] = []
        answer = QuotaAnswer(granted=True, used=0)
        for key in keys:
            answer = await reserve_on(
                self.client,
                key,
                QuotaRequest(count=1, limit=limit, token=f"{request.token}-{key}", window_s=WINDOW.total_seconds()),
            )
            if not answer.granted:
                # The number's slot back, so a wait on the user's quota holds nothing of the number's.
                for taken in granted:
                    await release_on(self.client, taken, f"{request.token}-{taken}")
                log_event(
                    "sms.quota_wait",
                    job_id=activity.info().workflow_id,
                    to=mask_phone(request.phone),
                    used=answer.used,
                    limit=limit,
                    retry_at=answer.retry_at,
                )
                return answer
            granted.append(key)
        return answer
