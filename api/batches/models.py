"""POST /notify/batch's body (one channel, up to HERALD_MAX_BATCH_ITEMS items, options for them all)
and the batches' answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, RootModel, WrapValidator

from api.core.models import Answer, Body, untagged
from api.jobs.models import DeliveryOptions, EmailFields, JobOptions, SmsFields, WebhookFields

# The schema's ceiling; the setting (at most this) is checked by the route.
MAX_BATCH_ITEMS_CEILING = 100_000


class BatchOptions(DeliveryOptions):
    """The options a batch's items share: those of a job, without `then` (each item retries on its
    own: `attempts` counts an item's attempts); `webhookUrl` is the batch's."""

    webhookUrl: str | None = Field(
        None,
        max_length=2048,
        description="receives one signed `batch.completed` callback with the counts once every item is final",
    )

    def job_options(self) -> JobOptions:
        """The same options as a job's (for the spec every item shares)."""
        return JobOptions.model_construct(
            delay=self.delay,
            deliverAt=self.deliverAt,
            attempts=self.attempts,
            backoff=self.backoff,
            priority=self.priority,
        )


class EmailItem(Body, EmailFields):
    pass


class SmsItem(Body, SmsFields):
    pass


class WebhookItem(Body, WebhookFields):
    pass


def _items(model: Any) -> Any:
    return Field(
        min_length=1,
        max_length=MAX_BATCH_ITEMS_CEILING,
        description="the items, each the body of the channel's `/notify/*` route without options; at "
        "most HERALD_MAX_BATCH_ITEMS (default 10000)",
    )


class EmailBatch(BatchOptions):
    channel: Literal["email"]
    items: list[EmailItem] = _items(EmailItem)


class SmsBatch(BatchOptions):
    channel: Literal["sms"]
    items: list[SmsItem] = _items(SmsItem)


class WebhookBatch(BatchOptions):
    channel: Literal["webhook"]
    items: list[WebhookItem] = _items(WebhookItem)


class NotifyBatch(
    RootModel[
        Annotated[
            EmailBatch | SmsBatch | WebhookBatch,
            Field(discriminator="channel"),
            WrapValidator(untagged("channel", ("email", "sms", "webhook"), "batch")),
        ]
    ]
):
    """`channel` and that channel's items, with the options they share."""


class BatchAccepted(Answer):
    batchId: str = Field(description="the batch's id, also its Temporal workflow id")
    jobIds: list[str] = Field(
        description="each item's job id (`<batchId>-<n>`, n from 0), in item order; each "
        "answers on every job status route"
    )
    statusUrl: str = Field(description="`/batches/{batchId}`")


class BatchCounts(Answer):
    queued: int = Field(description="items waiting to be sent (also on a delay or a retry backoff)")
    processing: int = Field(description="items being sent right now")
    success: int
    failed: int = Field(description="items that failed for good; each is a dead letter of its own")
    cancelled: int
    suppressed: int = Field(description="items not sent by their user's preferences (a batch's items name none: 0)")


class BatchStatus(Answer):
    """A batch: its items counted by state, in the words of GET /notifications/{id}."""

    id: str
    channel: Literal["email", "sms", "webhook"]
    total: int = Field(description="the number of items")
    counts: BatchCounts
    done: bool = Field(description="true once every item is final (success, failed or cancelled)")


class BatchCancelled(Answer):
    batchId: str
    cancelled: int = Field(description="how many items were waiting and are now cancelled; those being sent finish")
    statusUrl: str = Field(description="`/batches/{batchId}`")
