"""Job inputs and job state, shared by the API, the workflows and the activities.

Everything here is a plain dataclass so Temporal's JSON converter carries it as is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from temporalio.common import RetryPolicy, SearchAttributeKey

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
# The settings prefix (HERALD_<CHANNEL>_CONCURRENCY, _RATE_LIMIT) of each kind's task queue.
CHANNELS: dict[str, str] = {"email": "email", "sms": "sms", "webhook": "webhook", "cleanup": "maintenance"}
QUEUE_CHANNELS: dict[str, str] = {TASK_QUEUES[kind]: channel for kind, channel in CHANNELS.items()}

# Where a job keeps its state: the workflow's memo, readable by describe without a worker.
STATE_MEMO_KEY = "herald"
# Signal that jobs started before the lean lifecycle received after each attempt (see
# workflows/job_tracking_v0.py); kept so their runs keep working.
ATTEMPT_SIGNAL = "attempt_finished"
# Search attributes: what a job is, and its status (set at start and at the end), for visibility
# queries (the Web UI's filters, the DLQ, the stats).
JOB_TYPE_KEY = SearchAttributeKey.for_keyword("HeraldJobType")
JOB_STATUS_KEY = SearchAttributeKey.for_keyword("HeraldStatus")
# Whose job it is (typed notifications, reports): user_ref(userId), never contact data, so a
# report can list a user's notifications from visibility alone.
JOB_USER_KEY = SearchAttributeKey.for_keyword("HeraldUser")
SEARCH_ATTRIBUTES = {key.name: "Keyword" for key in (JOB_TYPE_KEY, JOB_STATUS_KEY, JOB_USER_KEY)}


def user_ref(user_id: str) -> str:
    """The HeraldUser value of a user's jobs: a digest, so visibility holds no client-chosen text."""
    return hashlib.sha256(user_id.encode()).hexdigest()[:32]


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
            backoff_coefficient=self.coefficient,
            maximum_interval=max(max_interval, timedelta(milliseconds=self.delay_ms)),
            maximum_attempts=self.max_attempts,
        )

    @property
    def coefficient(self) -> float:
        return 2.0 if self.backoff == "exponential" else 1.0

    def first_wait(self) -> timedelta:
        """The wait between the first and the second attempt."""
        return timedelta(milliseconds=max(self.delay_ms, 1))

    def after_first(self) -> "RetrySpec":
        """The same schedule for the attempts after the first (its first wait is the second one)."""
        return RetrySpec(max_attempts=self.max_attempts - 1, backoff=self.backoff,
                         delay_ms=int(self.delay_ms * self.coefficient))

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
    # A send attempt (an activity, not the first local one) is lost when the server has heard no
    # heartbeat for this long: retried then, not at the end of the start-to-close. None: no
    # heartbeat timeout (jobs accepted before it existed, and cleanup jobs).
    heartbeat_timeout_s: float | None = None
    # The first attempt runs as a local activity (no activity task, fewer history events) unless
    # the channel has a task-queue rate limit, which only normal activities honour.
    first_attempt_local: bool = True

    def due_at(self, accepted_at: datetime) -> datetime | None:
        """When the job may first be sent (None: at once); a `delay` counts from `accepted_at`."""
        if self.deliver_at:
            return datetime.fromisoformat(self.deliver_at)
        if self.delay_ms > 0:
            return accepted_at + timedelta(milliseconds=self.delay_ms)
        return None


@dataclass
class AttemptRecord:
    """One send attempt, as the attempt log keeps it."""

    attempt: int
    started_at: str
    finished_at: str
    succeeded: bool
    error: str | None = None
    retryable: bool = True
    status_code: int | None = None
    response_excerpt: str | None = None
    # When Temporal started this attempt, by the server's clock (None for a local activity, which
    # the worker starts itself): the backoff between attempts, also under skipped test time.
    server_started_at: str | None = None


@dataclass
class AttemptContext:
    """Where a job's attempts stand when one send activity starts; set by the workflow.

    A job's first attempt may run as a local activity and the rest as one activity with a
    retry policy, whose own attempt counter starts again at 1: `first_attempt` maps it back
    to the job's attempt number, and `earlier` starts its attempt log.
    """

    first_attempt: int = 1
    max_attempts: int = 3
    earlier: list[AttemptRecord] = field(default_factory=list)

    def job_attempt(self, activity_attempt: int) -> int:
        return self.first_attempt + activity_attempt - 1


@dataclass
class SendInput:
    """What every send activity's input carries besides its message."""

    context: AttemptContext = field(default_factory=AttemptContext, kw_only=True)


def stamped(message: SendInput, job_id: str) -> SendInput:
    """The message with `job_id` as its idempotency key (and webhook-id) where it has none yet:
    a scheduled job's runs are jobs of their own, each named by its run's workflow id."""
    keys = {f.name: job_id for f in fields(message)
            if f.name in ("idempotency_key", "webhook_id") and not getattr(message, f.name)}
    return replace(message, **keys)


@dataclass
class SendResult:
    """What every successful send returns besides its own result: the job's attempt log."""

    deliveries: list[AttemptRecord] = field(default_factory=list, kw_only=True)


@dataclass
class AttemptLog:
    """The attempt log so far, carried in a failed attempt's error details."""

    deliveries: list[AttemptRecord] = field(default_factory=list)


@dataclass
class EmailMessage(SendInput):
    to: str
    subject: str
    body: str
    idempotency_key: str


@dataclass
class SmsMessage(SendInput):
    phone: str
    message: str
    idempotency_key: str


@dataclass
class WebhookRequest(SendInput):
    url: str
    data: Any
    # The Standard Webhooks `webhook-id`: fixed per job so receivers can de-duplicate retries.
    webhook_id: str


@dataclass
class CleanupTask(SendInput):
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
class DeliveryReceipt(SendResult):
    """What a successful send attempt returns."""

    summary: str
    provider_id: str | None = None
    status_code: int | None = None
    response_excerpt: str | None = None
    # SMS and email: which provider delivered, "primary" or "fallback" (activities/fallback.py);
    # None for a webhook, and in receipts written before the fallback existed.
    provider: str | None = None


@dataclass
class CleanupReport(SendResult):
    task: str
    directory: str
    removed: list[str] = field(default_factory=list)
    kept: int = 0


@dataclass
class FailureDetail:
    """What the far side said, carried in an attempt's error details for the attempt log."""

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
