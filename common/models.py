"""Job inputs and job state, shared by the API, the workflows and the activities.

Everything here is a plain dataclass so Temporal's JSON converter carries it as is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, overload

from temporalio.common import RetryPolicy, SearchAttributeKey

from common.tenants import TENANT_KEY, scoped

JobKind = Literal["email", "sms", "webhook", "cleanup", "report"]
# Which route family created a job, and so which status words its callback speaks.
JobFamily = Literal["jobs", "notify"]
CleanupTaskName = Literal["delete_temp", "remove_old_logs", "expire_sessions"]

TASK_QUEUES: dict[str, str] = {
    "email": "herald-email",
    "sms": "herald-sms",
    "webhook": "herald-webhook",
    "cleanup": "herald-maintenance",
    # A report reads visibility and writes one file: maintenance work, on the maintenance queue.
    "report": "herald-maintenance",
}
# The settings prefix (HERALD_<CHANNEL>_CONCURRENCY, _RATE_LIMIT) of each kind's task queue.
CHANNELS: dict[str, str] = {
    "email": "email",
    "sms": "sms",
    "webhook": "webhook",
    "cleanup": "maintenance",
    "report": "maintenance",
}
QUEUE_CHANNELS: dict[str, str] = {TASK_QUEUES[kind]: channel for kind, channel in CHANNELS.items()}
# Intake-time state (an SMS number's hourly quota, an Idempotency-Key's record): small workflows a POST
# updates before it answers. Only the API processes poll this queue (api/core/intake.py), so accepting a
# job waits on the API and Temporal, never on a job worker (docs/api.md, "Intake needs only the API and
# Temporal").
INTAKE_TASK_QUEUE = "herald-intake"

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
# Whose (which tenant's) run it is: HeraldTenant (common/tenants.py), on every run, batch and chunk.
SEARCH_ATTRIBUTES = {key.name: "Keyword" for key in (JOB_TYPE_KEY, JOB_STATUS_KEY, JOB_USER_KEY, TENANT_KEY)}


def user_ref(user_id: str, scope: str = "") -> str:
    """The HeraldUser value of a user's jobs: a digest, so visibility holds no client-chosen text; in the
    tenant's scope (common/tenants.py), so a report lists its own tenant's user only."""
    return hashlib.sha256(scoped(scope, user_id).encode()).hexdigest()[:32]


class Phase(StrEnum):
    """A job's internal state; api/jobs/service.py translates it into each family's words."""

    QUEUED = "queued"
    DELAYED = "delayed"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Not sent, by the user's preferences (an opt-out of the channel or the topic): final, not a failure.
    SUPPRESSED = "suppressed"

    @property
    def final(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED, Phase.SUPPRESSED)


class WaitingOn(StrEnum):
    """What a `delayed` job waits on (JobState.waiting_on): the stats count the two its user's
    preferences cause (deferred, digested); a release ends all but THROTTLE."""

    DELAY = "delay"  # also deliverAt
    QUIET_HOURS = "quiet_hours"
    DIGEST = "digest"
    BACKOFF = "backoff"
    THROTTLE = "throttle"


# A job's retries when the client names none: the API's defaults of `attempts` and `backoff`.
DEFAULT_ATTEMPTS = 3
BackoffType = Literal["exponential", "fixed"]
DEFAULT_BACKOFF: BackoffType = "exponential"
DEFAULT_BACKOFF_DELAY_MS = 2000


@dataclass
class RetrySpec:
    """A job's `attempts` and `backoff`, as the client gave them."""

    max_attempts: int = DEFAULT_ATTEMPTS
    backoff: BackoffType = DEFAULT_BACKOFF
    delay_ms: int = DEFAULT_BACKOFF_DELAY_MS

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

    def after_first(self) -> RetrySpec:
        """The same schedule for the attempts after the first (its first wait is the second one)."""
        return RetrySpec(
            max_attempts=self.max_attempts - 1, backoff=self.backoff, delay_ms=int(self.delay_ms * self.coefficient)
        )

    def from_attempt(self, attempt: int) -> RetrySpec:
        """The same schedule for the attempts from `attempt` on (its first wait is the one after `attempt`)."""
        schedule = self
        for _ in range(attempt - 1):
            schedule = schedule.after_first()
        return schedule

    def wait_after(self, attempt: int) -> timedelta:
        """The wait between attempt `attempt` and the next, as the retry policy of the attempts after the
        first (`after_first().policy()`) has the Temporal server wait: capped at its maximum interval."""
        if attempt <= 1:
            return self.first_wait()
        policy = self.after_first().policy()
        wait = policy.initial_interval * policy.backoff_coefficient ** (attempt - 2)
        return min(wait, policy.maximum_interval or wait)

    def backoff_total(self, max_interval: timedelta = timedelta(hours=1)) -> timedelta:
        """Sum of all waits between attempts, for sizing the schedule-to-close timeout."""
        policy = self.policy(max_interval)
        total = timedelta()
        for n in range(self.max_attempts - 1):
            gap = policy.initial_interval * (policy.backoff_coefficient**n)
            total += min(gap, policy.maximum_interval or gap)
        return total


# JobSpec.lifecycle of a job that runs the lean lifecycle (JobTracker) without asking its patch.
LEAN_LIFECYCLE_INPUT = 1


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
    # The first attempt runs as a local activity (no activity task, fewer history events); a worker
    # whose channel has a rate limit declines it and the attempt goes through the task queue
    # (activities/rate_limit.py). False: every attempt an activity from the start (jobs accepted by an
    # API that read the rate limit itself, before the workers enforced it; schedules it created).
    first_attempt_local: bool = True
    # The HeraldUser search attribute of a job made for a known user (user_ref(userId)); None: none.
    user_ref: str | None = None
    # The job's `then`: a follow-up job started as a child workflow once this one has completed
    # (workflows/job_tracking.py). Its own job id is empty: the child takes its workflow id,
    # `<jobId>-then`. None for every job accepted before chaining existed.
    then: FollowUp | None = None
    # Whose job it is (common/tenants.py): the tenant's name, which its `then`, its schedule's runs, a
    # batch's dead letters and a redrive record as theirs; and the tenant's scope, which the ids the
    # job derives from client-chosen names (SMS quotas, the user it is for) are digested with. None
    # and "" in every run started before tenants (the default tenant's).
    tenant: str | None = None
    tenant_scope: str = ""
    # Whose preferences decide the job when it is about to be sent (common/preferences.py): a notification
    # that names a userId. None for every other job and every run accepted before preferences existed.
    audience: Audience | None = None
    # The lifecycle the job runs (workflows/job_tracking.py), chosen by whoever built the spec
    # (new_spec: LEAN_LIFECYCLE_INPUT). 0 in every spec built before the field: such a run asks the
    # `lean-lifecycle` patch instead, which costs each new run a marker and a search-attribute
    # upsert (two history events, one visibility write) that this field spares it.
    lifecycle: int = 0

    def due_at(self, accepted_at: datetime) -> datetime | None:
        """When the job may first be sent (None: at once); a `delay` counts from `accepted_at`."""
        if self.deliver_at:
            return datetime.fromisoformat(self.deliver_at)
        if self.delay_ms > 0:
            return accepted_at + timedelta(milliseconds=self.delay_ms)
        return None


@dataclass
class Audience:
    """Whom a notification is for, as its user's preferences see it (DESIGN.md, "Preferences")."""

    user_id: str
    channel: str  # "email" | "sms": the channel the user may have opted out of
    topic: str | None = None
    # Critical notifications ignore topic opt-outs and quiet hours (never channel opt-outs).
    critical: bool = False


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
    # A first attempt cut short by a crash of its worker (a local activity: Temporal ran the
    # workflow task again, and with it the attempt; activities/attempt_log.py).
    interrupted: bool = False


@dataclass
class AttemptContext:
    """Where a job's attempts stand when one send activity starts; set by the workflow.

    A job's first attempt may run as a local activity and the rest as one activity with a
    retry policy, whose own attempt counter starts again at 1: `first_attempt` maps it back
    to the job's attempt number, and `earlier` starts its attempt log.
    """

    first_attempt: int = 1
    max_attempts: int = DEFAULT_ATTEMPTS
    earlier: list[AttemptRecord] = field(default_factory=list)
    # Set on a first attempt (a local activity) whose workflow task may be a rerun: the run was
    # rebuilt by replay on this worker, or its first workflow task saw more than its own start. The
    # attempt then reads the run's history for a workflow task its worker never finished.
    maybe_rerun: bool = False
    # Set on an attempt the workflow schedules as an activity of its own and whose backoff it waits out
    # itself, on a timer POST /jobs/{id}/release can end (workflows/job_tracking.py): a failure goes back
    # to the workflow at once, never retried by Temporal (except an attempt lost with its worker or handed
    # back at its shutdown). False on the attempts of a send that Temporal retries under its policy.
    own_backoff: bool = False

    def job_attempt(self, activity_attempt: int) -> int:
        return self.first_attempt + activity_attempt - 1


@dataclass
class SendInput:
    """What every send activity's input carries besides its message."""

    context: AttemptContext = field(default_factory=AttemptContext, kw_only=True)


def stamped(message: SendInput, job_id: str) -> SendInput:
    """The message with `job_id` as its idempotency key (and webhook-id) where it has none yet:
    a scheduled job's runs are jobs of their own, each named by its run's workflow id."""
    keys: dict[str, Any] = {
        f.name: job_id
        for f in fields(message)
        if f.name in ("idempotency_key", "webhook_id") and not getattr(message, f.name)
    }
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
    # An HTML alternative to `body` (typed notifications' templates): sent as multipart/alternative.
    # None for plain-text emails and for every message accepted before templates existed.
    html: str | None = None


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
    # A typed notification (POST /notifications): the user and template, resolved and rendered at
    # send time (activities/users.py). None for every other notification and every older run.
    typed: TypedEmail | None = None
    # Set only for a batch item that failed inside its batch (workflows/batch.py): the run fails at
    # once with this state, so the item is a dead letter of its own; a redrive clears it and sends.
    batch_failure: JobState | None = None
    # An SMS counts against its number's hourly quota (workflows/sms_quota.py) and, with `sms_user_id`,
    # the user's too. `sms_slot_taken`: the API took those slots when it accepted the job (a 429
    # otherwise); without it (a schedule's run, a redrive, a then of either) the run takes them when it
    # is about to send, and waits `delayed` while the quota is full (workflows/notification.py).
    sms_user_id: str | None = None
    sms_slot_taken: bool = False


@dataclass
class CleanupInput:
    job: JobSpec
    cleanup: CleanupTask


@dataclass
class FollowUp:
    """A job's `then`: one follow-up job (exactly one of the inputs), started once the job completed."""

    notification: NotificationInput | None = None
    cleanup: CleanupInput | None = None
    priority: int | None = None

    @property
    def request(self) -> NotificationInput | CleanupInput:
        request = self.notification or self.cleanup
        assert request is not None, "a follow-up carries a notification or a cleanup"
        return request


def then_id(job_id: str) -> str:
    """The job id of a job's `then` follow-up (its workflow id)."""
    return f"{job_id}-then"


# ---- reports (POST /reports, workflows/report.py, activities/reports.py) --------------------------
ReportType = Literal["notification-history"]


def report_id(user_id: str, report_type: str, scope: str = "") -> str:
    """A report's job id: one per userId + reportType (in the tenant's scope), so a second request finds
    the one in flight."""
    return "report-" + hashlib.sha256(scoped(scope, f"{report_type}\x00{user_id}").encode()).hexdigest()[:32]


def result_url(job_id: str) -> str:
    """Where the API serves a finished report (behind the client key)."""
    return f"/reports/{job_id}/result"


def report_path(data_dir: Path, job_id: str) -> Path:
    """Where a report's document is written (by the worker) and read (by the API)."""
    return data_dir / "reports" / f"{job_id}.json"


@dataclass
class ReportRequest(SendInput):
    user_id: str
    report_type: ReportType
    # The tenant's scope (common/tenants.py): the report lists that tenant's user's jobs only.
    scope: str = ""


@dataclass
class ReportInput:
    job: JobSpec
    report: ReportRequest


@dataclass
class ReportReceipt(SendResult):
    """What a report job returns: what it holds and where it is served."""

    report_type: str
    notifications: int
    result_url: str


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


# A result callback's state (CallbackState.status), as every status route shows it.
CallbackStatus = Literal["pending", "delivered", "failed"]


@dataclass
class CallbackState:
    url: str
    status: CallbackStatus = "pending"
    attempts: int = 0
    error: str | None = None


@dataclass
class Decision:
    """One rule applied to a job: `rule` ∈ channel, topic, quiet_hours, digest, throttle, release; `outcome`
    ∈ sent, suppressed, deferred, digested, released; `until`: when a deferral ends."""

    at: str
    rule: str
    outcome: str
    until: str | None = None


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
    # The job id of the `then` follow-up, once started.
    next: str | None = None
    # Why the job was not sent (Phase.SUPPRESSED): `channel_opt_out` or `topic_opt_out`.
    suppressed_reason: str | None = None
    # The rules applied to the job, in order (common/preferences.py): why it went out, waited, or did not.
    decisions: list[Decision] = field(default_factory=list)
    # What a `delayed` job waits on: delay (also deliverAt), quiet_hours, digest, backoff, throttle. None
    # otherwise, and in every state written before release existed. POST /jobs/{id}/release ends all but throttle.
    waiting_on: str | None = None
    # The digest the job joined (workflows/digest.py), while it waits in it and once it went out in it.
    digest_id: str | None = None

    @classmethod
    def initial(cls, spec: JobSpec, phase: Phase, updated_at: str, not_before: str | None = None) -> JobState:
        """A job's state before its first attempt: what the API writes into the memo at start, and
        what the job's workflow begins with."""
        return cls(
            job_id=spec.job_id,
            kind=spec.kind,
            family=spec.family,
            phase=phase,
            max_attempts=spec.retry.max_attempts,
            created_at=spec.created_at,
            updated_at=updated_at,
            recipient=spec.recipient,
            not_before=not_before,
            callback=CallbackState(url=spec.callback_url) if spec.callback_url else None,
        )


# ---- batches (POST /notify/batch, workflows/batch.py) ---------------------------------------------
BATCH_MEMO_KEY = "herald_batch"


def batch_item_id(batch_id: str, n: int) -> str:
    """A batch item's job id (also its idempotency key and webhook-id)."""
    return f"{batch_id}-{n}"


@dataclass
class BatchEmail:
    to: str
    subject: str
    body: str


@dataclass
class BatchSms:
    phone: str
    message: str


@dataclass
class BatchWebhook:
    url: str
    data: Any


@overload
def item_message(item: BatchEmail, job_id: str) -> EmailMessage: ...
@overload
def item_message(item: BatchSms, job_id: str) -> SmsMessage: ...
@overload
def item_message(item: BatchWebhook, job_id: str) -> WebhookRequest: ...
def item_message(item: BatchEmail | BatchSms | BatchWebhook, job_id: str) -> EmailMessage | SmsMessage | WebhookRequest:
    """What a batch item's send takes, in its batch's slice and as a dead letter's (or a redriven item's)
    own job: its message, with the item's job id as idempotency key (webhook-id)."""
    if isinstance(item, BatchEmail):
        return EmailMessage(to=item.to, subject=item.subject, body=item.body, idempotency_key=job_id)
    if isinstance(item, BatchSms):
        return SmsMessage(phone=item.phone, message=item.message, idempotency_key=job_id)
    return WebhookRequest(url=item.url, data=item.data, webhook_id=job_id)


@dataclass
class BatchInput:
    """One batch: the items of one channel and the options they share (`job`, named by the batch id)."""

    job: JobSpec
    emails: list[BatchEmail] = field(default_factory=list)
    sms: list[BatchSms] = field(default_factory=list)
    webhooks: list[BatchWebhook] = field(default_factory=list)
    # Items per send activity, and send activities in flight at once.
    slice_items: int = 50
    slices_in_flight: int = 4
    # A batch of more items than one run should hold is split into chunks (workflows/batch_chunks.py):
    # each a run of this input holding items `first`, `first + 1`, ... of the batch `job.job_id`,
    # which waits for its batch's go (BATCH_GO_SIGNAL) and reports its counts to it when done.
    # Unset in a batch of one run (and in every run started before chunks).
    first: int = 0
    parent_id: str | None = None
    # A batch of one run posts the `batch.completed` callback itself; a chunked one, its parent.
    callback_url: str | None = None

    @property
    def total(self) -> int:
        return len(self.emails) + len(self.sms) + len(self.webhooks)

    def recipient(self, n: int) -> str:
        if self.emails:
            return self.emails[n].to
        if self.sms:
            return self.sms[n].phone
        return self.webhooks[n].url


@dataclass
class BatchSlice:
    """One send activity's share of a batch: item numbers, each item's attempt number, the items."""

    batch_id: str
    numbers: list[int]
    attempts: list[int]
    max_attempts: int
    emails: list[BatchEmail] = field(default_factory=list)
    sms: list[BatchSms] = field(default_factory=list)
    webhooks: list[BatchWebhook] = field(default_factory=list)


@dataclass
class ItemOutcome:
    """How one item's attempt in a slice went (kept small: a batch's history holds a thousand)."""

    n: int
    ok: bool
    summary: str | None = None
    provider_id: str | None = None
    # Which provider delivered (primary or fallback), where the channel has a fallback.
    provider: str | None = None
    error: str | None = None
    retryable: bool = True
    retry_after_s: float | None = None


@dataclass
class SliceOutcomes:
    """A slice activity's result: its items' outcomes, one list per ItemOutcome field.

    Temporal's converter looks a dataclass's type hints up for every value it decodes: fifty
    ItemOutcomes cost the batch workflow ~7x the CPU of these eight lists."""

    n: list[int] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    summary: list[str | None] = field(default_factory=list)
    provider_id: list[str | None] = field(default_factory=list)
    provider: list[str | None] = field(default_factory=list)
    error: list[str | None] = field(default_factory=list)
    retryable: list[bool] = field(default_factory=list)
    retry_after_s: list[float | None] = field(default_factory=list)
    # The slice was not sent: its worker's channel has a rate limit, which counts an activity once
    # however many items it sends (activities/rate_limit.py); the batch sends one item per activity.
    declined: bool = False

    @classmethod
    def of(cls, outcomes: list[ItemOutcome]) -> SliceOutcomes:
        columns: dict[str, Any] = {f.name: [getattr(o, f.name) for o in outcomes] for f in fields(ItemOutcome)}
        return cls(**columns)

    def items(self) -> list[ItemOutcome]:
        columns = [getattr(self, f.name) for f in fields(ItemOutcome)]
        return [ItemOutcome(*values) for values in zip(*columns)]


@dataclass
class BatchItemState:
    """One item's state inside its batch's run (Phase values)."""

    phase: Phase
    recipient: str | None = None
    attempts: int = 0
    updated_at: str = ""
    not_before: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None


@dataclass
class BatchResult:
    batch_id: str
    channel: str
    created_at: str
    max_attempts: int
    items: list[BatchItemState] = field(default_factory=list)


# The signals between a chunked batch (workflows/batch_chunks.py) and its chunks (workflows/batch.py).
BATCH_GO_SIGNAL = "batch_go"
CHUNK_DONE_SIGNAL = "chunk_done"


def batch_chunk_id(batch_id: str, chunk: int) -> str:
    """The workflow id of a batch's chunk (never an item's id: those end in digits alone)."""
    return f"{batch_id}-chunk{chunk}"


@dataclass
class ChunkedBatchInput:
    """A batch split into chunks of `chunk_items` items (the last one maybe fewer), all started
    by the API before this run, which releases them, waits for their counts and posts the callback."""

    batch_id: str
    channel: str
    total: int
    chunk_items: int
    created_at: str
    callback_url: str | None = None
    # The run continues as new past this many history events (two per chunk: its go, its counts).
    history_events: int = 2000
    # Set by a run that continued as new: the chunks were released, and these reported already.
    released: bool = False
    done: dict[str, dict[str, int]] = field(default_factory=dict)  # by first item number (JSON keys: str)

    @property
    def chunks(self) -> int:
        return -(-self.total // self.chunk_items)


@dataclass
class ChunkDone:
    """A chunk's counts (by Phase value) once all its items are final; `first`: its first item's number."""

    first: int
    counts: dict[str, int]


@dataclass
class BatchSummary:
    """A chunked batch's result: its items counted by Phase value (the items are in its chunks)."""

    batch_id: str
    channel: str
    total: int
    counts: dict[str, int]


# ---- users and typed notifications (workflows/user.py, activities/users.py, POST /notifications) ----
# The users' workflows run on the maintenance queue: a typed email's send, on the email queue, queries
# its user without waiting for a slot of its own queue. (SMS quotas ran there too until they moved to
# INTAKE_TASK_QUEUE; the worker still serves the runs started there, worker.py.)
ENTITY_TASK_QUEUE = TASK_QUEUES["cleanup"]


def user_workflow_id(user_id: str, scope: str = "") -> str:
    # A digest, like HeraldUser: a userId is often an email address, and workflow ids are not encrypted.
    # In the tenant's scope: the same userId in two tenants is two users.
    return f"user-{user_ref(user_id, scope)}"


@dataclass
class UserProfile:
    """A user's contact data, as PUT /users/{userId} gave it (kept in the user's workflow)."""

    user_id: str
    email: str | None = None
    phone: str | None = None
    name: str | None = None
    locale: str | None = None
    opt_out: list[str] = field(default_factory=list)
    created_at: str | None = None
    updated_at: str | None = None
    # Preferences (common/preferences.py): an IANA zone (None: UTC), quiet hours in it, topics opted
    # in (true) or out (false), and the digest. `opt_out` holds the channels opted out of.
    timezone: str | None = None
    quiet_hours: QuietHours | None = None
    topics: dict[str, bool] = field(default_factory=dict)
    digest: DigestPreference | None = None

    def preferences(self) -> tuple[Any, ...]:
        """What decides the user's notifications: a change of it reaches their waiting ones at once."""
        return (self.timezone, self.quiet_hours, sorted(self.opt_out), self.topics, self.digest)


@dataclass
class QuietHours:
    """ "HH:MM" to "HH:MM" in the user's timezone; may span midnight (22:00 to 07:00)."""

    start: str
    end: str


@dataclass
class DigestPreference:
    """The topics collected into one email: daily `at` "HH:MM" local time, or `every` N seconds."""

    topics: list[str] = field(default_factory=list)
    at: str | None = None
    every: int | None = None


@dataclass
class UserInput:
    """A user workflow's input: its id, and the profile carried over a continue-as-new, with the jobs
    waiting on the user's preferences (job ids) and those still to be told of a change."""

    user_id: str
    profile: UserProfile | None = None
    waiting: list[str] = field(default_factory=list)
    to_tell: list[str] = field(default_factory=list)


# A job deferred by its user's preferences registers with the user's workflow; a change of preferences
# tells every registered job at once (workflows/user.py, workflows/job_tracking.py).
JOB_WAITING_SIGNAL = "job_waiting"
PREFERENCES_CHANGED_SIGNAL = "preferences_changed"
# POST /jobs/{id}/release: a job waiting (delay, deliverAt, quiet hours, a digest, a retry backoff) runs now.
# RELEASE_WAIT_SIGNAL names the wait the API read (ReleaseSeen), so a release that reaches the job once that
# wait has ended is dropped; RELEASE_SIGNAL is what the API sent before it, still handled for such runs.
RELEASE_SIGNAL = "release"
RELEASE_WAIT_SIGNAL = "release_wait"


@dataclass
class ReleaseSeen:
    """The wait POST /jobs/{id}/release read the job in: `delayed` after this many attempts."""

    attempts: int


@dataclass
class DeliveryCheck:
    """What the preferences check (activities/preferences.py) is asked, just before a send."""

    user_id: str
    scope: str
    channel: str
    topic: str | None
    critical: bool
    now: str  # the workflow's clock, ISO 8601
    # Released by POST /jobs/{id}/release: quiet hours and digests no longer hold it (opt-outs still do).
    released: bool = False
    # The job can join a digest (a run past the `digests` patch): only then may the verdict be `digest`.
    digests: bool = False


@dataclass
class Verdict:
    """The preferences' answer: `send`, `suppress` (with `reason`), `defer` (until `until`) or `digest` (join
    the user's digest for the topic; `until`: when a digest opened now goes out); `rule` is the rule that
    decided (for `send`, the last one the notification was checked against)."""

    outcome: str
    rule: str
    reason: str | None = None
    until: str | None = None


@dataclass
class TypedEmail(SendInput):
    """A typed notification's send: whom (a userId, resolved at send time) and which template."""

    type: str
    user_id: str
    data: dict[str, Any]
    idempotency_key: str
    # The tenant's scope (common/tenants.py): whose user `user_id` is.
    scope: str = ""


# ---- digests (workflows/digest.py, activities/digests.py) ------------------------------------------------
# A digest holds at most this many items: the one that fills it sends it at once; the next opens a new one.
MAX_DIGEST_ITEMS = 1000
# Signals: a job joins (and leaves) its user's digest; the digest tells it where it waits and when it went.
DIGEST_JOIN_SIGNAL = "join"
DIGEST_LEAVE_SIGNAL = "leave"
DIGEST_SEND_SIGNAL = "send_now"
DIGEST_JOINED_SIGNAL = "digest_joined"
DIGEST_SENT_SIGNAL = "digest_sent"
# An update: a job leaves its digest and learns whether it was taken out before the digest's send began.
DIGEST_TAKE_OUT_UPDATE = "take_out"


def digest_workflow_id(user_id: str, topic: str, scope: str = "") -> str:
    """A user's digest for one topic: a digest of the tenant's scope, the userId and the topic, as for users."""
    return "digest-" + hashlib.sha256(scoped(scope, f"{user_id}\x00{topic}").encode()).hexdigest()[:32]


def digest_workflow_of(digest_id: str) -> str:
    """The workflow of a digest id (`<workflow id>-<n>`)."""
    return digest_id.rsplit("-", 1)[0]


@dataclass
class DigestItem:
    """One notification in a digest: its job, and what the digest email says of it (an email's subject, or a
    typed notification's type and data, whose subject template gives its one-line summary)."""

    job_id: str
    joined_at: str
    subject: str | None = None
    type: str | None = None
    data: dict[str, Any] | None = None
    # When a digest it opens goes out (its join's `until`).
    until: str | None = None


@dataclass
class DigestJoin:
    """A job's join (the join_digest local activity signals-with-start the digest's workflow)."""

    user_id: str
    scope: str
    topic: str
    item: DigestItem
    # When a digest opened by this item goes out (the verdict's `until`).
    until: str
    tenant: str | None = None


@dataclass
class DigestInput:
    """A digest workflow's input, and what it carries over a continue-as-new: the open digest's items."""

    user_id: str
    scope: str
    topic: str
    tenant: str | None = None
    seq: int = 1
    items: list[DigestItem] = field(default_factory=list)
    next_at: str | None = None
    # Jobs that joined and are still to be told where they wait (a join just before the continue-as-new).
    to_answer: list[str] = field(default_factory=list)
    # Signals a run takes before it continues as new (None: workflows/digest.py's MAX_SIGNALS), and items a
    # digest holds (None: MAX_DIGEST_ITEMS): tests set less.
    signals_per_run: int | None = None
    max_items: int | None = None


@dataclass
class DigestLeave:
    """A job leaving the digest it waits in (the leave_digest local activity updates the digest's workflow)."""

    digest_workflow: str
    job_id: str


@dataclass
class DigestLeft:
    """The digest's answer to a leave: `taken` out of the open digest (the job may go alone), or not: it is in
    the digest `digest_id`, whose send has begun, or was told already (None); either way the job waits for
    `digest_sent`, which says whether the digest went out."""

    taken: bool
    digest_id: str | None = None


@dataclass
class DigestJoined:
    """The digest's answer to a join: the digest the job waits in, and when it goes out."""

    digest_id: str
    next_at: str


@dataclass
class DigestInfo:
    """An open digest, as GET /users/{userId}/digests lists it (the digest workflow's `digest` query)."""

    digest_id: str
    topic: str
    items: int
    next_at: str | None
    # Its items' job ids in the order they joined (at most MAX_DIGEST_ITEMS ids, cheap to answer). Defaulted:
    # a worker from before it answers without them.
    job_ids: list[str] = field(default_factory=list)


@dataclass
class DigestEmail(SendInput):
    """A digest's send: its user (resolved now), its items in order; `digest_id` is its idempotency key."""

    user_id: str
    scope: str
    topic: str
    digest_id: str
    items: list[DigestItem]


# ---- SMS throttling (workflows/sms_quota.py, api/jobs/throttle.py) ---------------------------------------
@dataclass
class QuotaSlot:
    at: str  # ISO 8601, the quota workflow's clock
    token: str  # the reservation it belongs to (a release takes them back)


@dataclass
class QuotaInput:
    key: str
    slots: list[QuotaSlot] = field(default_factory=list)


@dataclass
class QuotaRequest:
    count: int
    limit: int
    token: str
    window_s: float = 3600


@dataclass
class QuotaAnswer:
    granted: bool
    used: int
    # When refused: seconds until enough slots free (by the quota workflow's clock), and that instant.
    retry_after_s: float | None = None
    retry_at: str | None = None
