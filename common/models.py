"""Job inputs and job state, shared by the API, the workflows and the activities.

Everything here is a plain dataclass so Temporal's JSON converter carries it as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from temporalio.common import RetryPolicy

JobKind = Literal["email", "sms", "webhook", "cleanup"]
# Which route family created a job, and so which status words its callback speaks.
JobFamily = Literal["jobs", "notify"]
CleanupTaskName = Literal["delete_temp", "remove_old_logs", "expire_sessions"]

TASK_QUEUES: dict[str, str] = {
    "email": "herald-email",
    "sms": "herald-sms",
    "webhook": "herald-webhook",
    "cleanup": "herald-maintenance",
}
# The settings prefix (HERALD_<CHANNEL>_CONCURRENCY) of each task queue.
QUEUE_CHANNELS: dict[str, str] = {
    "herald-email": "email",
    "herald-sms": "sms",
    "herald-webhook": "webhook",
    "herald-maintenance": "maintenance",
}

# Where a job keeps its state: the workflow's memo, readable by describe without a worker.
STATE_MEMO_KEY = "herald"
# Signal an activity attempt sends to its own workflow when it ends (see activities/reporting.py).
ATTEMPT_SIGNAL = "attempt_finished"
SEARCH_ATTRIBUTES = {"HeraldJobType": "Keyword", "HeraldStatus": "Keyword"}


class Phase(StrEnum):
    """A job's internal state; api/job_views.py translates it into each family's words."""

    QUEUED = "queued"
    DELAYED = "delayed"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED)


@dataclass
class RetrySpec:
    """A job's `attempts` and `backoff`, as the client gave them."""

    max_attempts: int = 3
    backoff: Literal["exponential", "fixed"] = "exponential"
    delay_ms: int = 2000

    def policy(self, max_interval: timedelta = timedelta(hours=1)) -> RetryPolicy:
        return RetryPolicy(
            initial_interval=timedelta(milliseconds=max(self.delay_ms, 1)),
            backoff_coefficient=2.0 if self.backoff == "exponential" else 1.0,
            maximum_interval=max(max_interval, timedelta(milliseconds=self.delay_ms)),
            maximum_attempts=self.max_attempts,
        )

    def backoff_total(self, max_interval: timedelta = timedelta(hours=1)) -> timedelta:
        """Sum of all waits between attempts, for sizing the schedule-to-close timeout."""
        policy = self.policy(max_interval)
        total = timedelta()
        for n in range(self.max_attempts - 1):
            gap = policy.initial_interval * (policy.backoff_coefficient**n)
            total += min(gap, policy.maximum_interval or gap)
        return total


@dataclass
class JobSpec:
    """What every job has, whatever it sends."""

    job_id: str
    kind: JobKind
    family: JobFamily
    created_at: str
    retry: RetrySpec = field(default_factory=RetrySpec)
    delay_ms: int = 0
    deliver_at: str | None = None
    callback_url: str | None = None
    recipient: str | None = None
    # From the API's settings: one attempt's start-to-close, and the longest Retry-After honoured.
    attempt_timeout_s: float = 30
    retry_after_cap_s: float = 3600

    def due_at(self, accepted_at: datetime) -> datetime | None:
        """When the job may first be sent (None: at once); a `delay` counts from `accepted_at`."""
        if self.deliver_at:
            return datetime.fromisoformat(self.deliver_at)
        if self.delay_ms > 0:
            return accepted_at + timedelta(milliseconds=self.delay_ms)
        return None


@dataclass
class EmailMessage:
    to: str
    subject: str
    body: str
    idempotency_key: str


@dataclass
class SmsMessage:
    phone: str
    message: str
    idempotency_key: str
    max_attempts: int = 3


@dataclass
class WebhookRequest:
    url: str
    data: Any
    # The Standard Webhooks `webhook-id`: fixed per job so receivers can de-duplicate retries.
    webhook_id: str


@dataclass
class CleanupTask:
    task: CleanupTaskName


@dataclass
class NotificationInput:
    job: JobSpec
    email: EmailMessage | None = None
    sms: SmsMessage | None = None
    webhook: WebhookRequest | None = None


@dataclass
class CleanupInput:
    job: JobSpec
    cleanup: CleanupTask


@dataclass
class DeliveryReceipt:
    """What a successful send attempt returns."""

    summary: str
    provider_id: str | None = None
    status_code: int | None = None
    response_excerpt: str | None = None


@dataclass
class CleanupReport:
    task: str
    directory: str
    removed: list[str] = field(default_factory=list)
    kept: int = 0


@dataclass
class FailureDetail:
    """Carried as ApplicationError details so the attempt log can show what the far side said."""

    status_code: int | None = None
    response_excerpt: str | None = None


@dataclass
class AttemptRecord:
    """One send attempt, as reported by the activity worker to the job's workflow."""

    attempt: int
    started_at: str
    finished_at: str
    succeeded: bool
    error: str | None = None
    retryable: bool = True
    status_code: int | None = None
    response_excerpt: str | None = None


@dataclass
class CallbackState:
    url: str
    status: Literal["pending", "delivered", "failed"] = "pending"
    attempts: int = 0
    error: str | None = None


@dataclass
class JobState:
    """A job's state as its workflow keeps it in the memo (key STATE_MEMO_KEY)."""

    job_id: str
    kind: str
    family: str
    phase: Phase
    max_attempts: int
    created_at: str
    updated_at: str
    recipient: str | None = None
    attempts: int = 0
    not_before: str | None = None
    result: Any = None
    error: str | None = None
    deliveries: list[AttemptRecord] = field(default_factory=list)
    callback: CallbackState | None = None
