"""Send one slice of a batch (workflows/batch.py): its items concurrently, each with the channel's own
send code (activities/email.py, sms.py, webhook.py), and report each item's outcome.

An item's failure never fails the activity: it is an outcome (retryable or not, with the
Retry-After the far side asked for), so one bad address costs its item alone and the workflow
retries only the items that need it. The activity itself fails only if its worker dies or it
outlives its timeouts; the workflow then counts one failed attempt for each of the slice's items.
Outcomes are kept small (a batch's history holds a thousand of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.email import EmailActivities
from activities.rate_limit import rate_limited
from activities.sms import SmsActivities
from activities.webhook import WebhookActivities
from common.failures import error_text
from common.logs import log_event
from common.metrics import FAILED, SUCCEEDED, count_attempt
from common.models import BatchSlice, DeliveryReceipt, ItemOutcome, SliceOutcomes, batch_item_id, item_message
from common.settings import Settings

Item = TypeVar("Item")
HEARTBEAT_EVERY_S = 2.0
# An item's error or summary, as Temporal writes it (JSON escapes each non-ASCII character as six
# bytes): a chunk's result holds one per item, so their size, not their characters, is what's bounded.
MAX_TEXT_BYTES = 300


def short(text: str) -> str:
    """`text` cut so its JSON form (as Temporal writes it) takes at most MAX_TEXT_BYTES: 300 ASCII
    characters, 50 of another script. A batch chunk's result then stays far below Temporal's 2 MB
    payload limit at the largest HERALD_BATCH_CHUNK_ITEMS (1,000) (tests/activities/test_failure_size.py)."""
    size = len(json.dumps(text)) - 2
    if size <= MAX_TEXT_BYTES:
        return text
    kept, size = [], 0
    for char in text:
        size += len(json.dumps(char)) - 2
        if size > MAX_TEXT_BYTES - 6:  # room for the ellipsis (one escaped character)
            break
        kept.append(char)
    return "".join(kept) + "…"


class BatchActivities:
    def __init__(
        self,
        settings: Settings,
        email: EmailActivities | None = None,
        sms: SmsActivities | None = None,
        webhook: WebhookActivities | None = None,
    ) -> None:
        self.settings = settings
        # The channel objects the single-job activities use (one SMTP identity, one HTTP pool each).
        self.email = email or EmailActivities(settings)
        self.sms = sms or SmsActivities(settings)
        self.webhook = webhook
        self._webhook_settings = settings
        # Sends of batch items in flight in this worker, per channel, whatever slice they belong to.
        self._gates: dict[str, asyncio.Semaphore] = {}

    def _webhooks(self) -> WebhookActivities:
        if self.webhook is None:
            self.webhook = WebhookActivities(self._webhook_settings)
        return self.webhook

    @activity.defn(name="send_email_slice")
    async def send_email_slice(self, part: BatchSlice) -> SliceOutcomes:
        return await self._send(
            part,
            "email",
            part.emails,
            lambda item, job_id, attempt: self.email.deliver(item_message(item, job_id), attempt, part.max_attempts),
        )

    @activity.defn(name="send_sms_slice")
    async def send_sms_slice(self, part: BatchSlice) -> SliceOutcomes:
        return await self._send(
            part,
            "sms",
            part.sms,
            lambda item, job_id, attempt: self.sms.deliver(item_message(item, job_id), attempt, part.max_attempts),
        )

    @activity.defn(name="deliver_webhook_slice")
    async def deliver_webhook_slice(self, part: BatchSlice) -> SliceOutcomes:
        return await self._send(
            part, "webhook", part.webhooks, lambda item, job_id, _: self._webhooks().deliver(item_message(item, job_id))
        )

    async def _send(
        self,
        part: BatchSlice,
        channel: str,
        items: Sequence[Item],
        send: Callable[[Item, str, int], Awaitable[DeliveryReceipt]],
    ) -> SliceOutcomes:
        """Each of the slice's items sent with `send` (given the item, its own job id, its attempt number)."""
        if len(items) > 1 and rate_limited(self.settings, channel):
            # One activity task, however many items: the channel's rate limit would count it once.
            log_event("batch.slice_declined", batch_id=part.batch_id, items=len(items), first=part.numbers[0])
            return SliceOutcomes(declined=True)
        limit = self._gates.get(channel)
        if limit is None:
            limit = self._gates[channel] = asyncio.Semaphore(max(1, self.settings.batch_send_concurrency))
        timeout = self.settings.send_timeout_seconds + 5

        async def one(n: int, attempt: int, item: Item) -> ItemOutcome:
            async with limit:
                try:
                    async with asyncio.timeout(timeout):  # (no task per item, unlike wait_for)
                        receipt = await send(item, batch_item_id(part.batch_id, n), attempt)
                except Exception as exc:  # noqa: BLE001 - every failure is this item's outcome
                    return _failed(part.batch_id, n, attempt, exc)
            count_attempt(SUCCEEDED)
            return ItemOutcome(
                n=n,
                ok=True,
                summary=short(receipt.summary),
                provider_id=receipt.provider_id,
                provider=getattr(receipt, "provider", None),
            )

        beating = asyncio.create_task(_heartbeat())
        try:
            outcomes = await asyncio.gather(*(one(n, a, i) for n, a, i in zip(part.numbers, part.attempts, items)))
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        failed = sum(not o.ok for o in outcomes)
        log_event(
            "batch.slice_sent",
            batch_id=part.batch_id,
            items=len(outcomes),
            failed=failed,
            first=part.numbers[0] if part.numbers else None,
        )
        return SliceOutcomes.of(list(outcomes))


def _failed(batch_id: str, n: int, attempt: int, exc: BaseException) -> ItemOutcome:
    application = exc if isinstance(exc, ApplicationError) else None
    delay = application.next_retry_delay if application else None
    error = "attempt timed out" if isinstance(exc, asyncio.TimeoutError) else error_text(exc)
    retryable = not (application and application.non_retryable)
    log_event("attempt.failed", job_id=batch_item_id(batch_id, n), attempt=attempt, error=error, retryable=retryable)
    count_attempt(FAILED)
    return ItemOutcome(
        n=n, ok=False, error=short(error), retryable=retryable, retry_after_s=delay.total_seconds() if delay else None
    )


async def _heartbeat() -> None:
    # So a slice whose worker died is retried on the heartbeat timeout, not at its start-to-close.
    # (Most slices end before the first beat: a heartbeat costs the SDK ~0.5 ms.)
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY_S)
        activity.heartbeat()


def slice_activity(channel: str) -> Any:
    return {
        "email": BatchActivities.send_email_slice,
        "sms": BatchActivities.send_sms_slice,
        "webhook": BatchActivities.deliver_webhook_slice,
    }[channel]
