"""The /jobs bodies and answers, and what every job body shares (options, `then`, typed jobs).

Requests are validated field by field (each bad field → one detail). Answers are validated from what
api/jobs/service.py builds and sent with `response_model_exclude_unset=True`: a key the view leaves out
(`nextAttemptAt`, `callback`, `error` on some routes) stays out of the answer, a key it sets to null
stays null. Answer models accept keys they do not declare (`extra="allow"`), so the wire is exactly what
the view built; tests/api/test_openapi.py fails when an answer carries a key no model documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

import phonenumbers
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    EmailStr,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    WrapValidator,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from api.core.models import DATE_TIME, Answer, Body, absent_unless, untagged
from common.models import (
    DEFAULT_ATTEMPTS,
    DEFAULT_BACKOFF,
    DEFAULT_BACKOFF_DELAY_MS,
    BackoffType,
    CallbackStatus,
    CleanupTaskName,
    JobKind,
    Phase,
)
from common.settings import MAX_EMAIL_BODY_CHARS, MAX_SMS_CHARS, MAX_SUBJECT_CHARS
from common.vocabulary import BULLMQ_STATUS, JOB_STATUS, NOTIFICATION_STATUS, words

# Each route family's status words, derived from the one table (common/vocabulary.py).
if TYPE_CHECKING:
    JobStatusWord: TypeAlias = str
    BullMQStatusWord: TypeAlias = str
    NotificationStatusWord: TypeAlias = str
else:
    # GET /jobs/{id}/status
    JobStatusWord = Literal[words(JOB_STATUS)]
    # GET /jobs/{id}: BullMQ's words
    BullMQStatusWord = Literal[words(BULLMQ_STATUS)]
    # GET /notifications/{id}: no word for "delayed"
    NotificationStatusWord = Literal[words(NOTIFICATION_STATUS)]
# A result callback's state, as common/models.py's CallbackState keeps it.
CallbackStatusWord = CallbackStatus

MAX_DELAY_MS = int(timedelta(days=366).total_seconds() * 1000)


MAX_BACKOFF_MS = int(timedelta(days=1).total_seconds() * 1000)


_DATE_TIME_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")


def _date_time_text(value: Any) -> Any:
    """Only ISO 8601 text: pydantic would also read a number (or numeric text) as a Unix time, in
    seconds or milliseconds by its size, so a `deliverAt` of 60000 would mean 1970."""
    if value is not None and not (isinstance(value, str) and _DATE_TIME_START.match(value)):
        raise PydanticCustomError(
            "datetime_type", "Input should be an ISO 8601 date-time with an offset, e.g. 2030-01-01T09:00:00Z"
        )
    return value


# How many `then` follow-ups may be chained one inside the other.
MAX_THEN_DEPTH = 5


def _bounded_chain(value: Any) -> Any:
    """At most MAX_THEN_DEPTH nested `then`s, counted on the raw body before any of it is validated
    (so a deep chain is a 400 on the outermost `then`, not a recursion through every level)."""
    item, depth = value, 0
    while isinstance(item, dict):
        depth += 1
        if depth > MAX_THEN_DEPTH:
            raise ValueError(f"at most {MAX_THEN_DEPTH} jobs can be chained with `then`")
        item = item.get("then")
    return value


class Backoff(Body):
    type: BackoffType = DEFAULT_BACKOFF
    delay: StrictInt = Field(
        DEFAULT_BACKOFF_DELAY_MS, ge=1, le=MAX_BACKOFF_MS, description="first wait between attempts, ms"
    )


class DeliveryOptions(Body):
    """When and how persistently to send: the options of every job, and those a batch's items share."""

    delay: StrictInt | None = Field(None, ge=0, le=MAX_DELAY_MS, description="wait this long (ms) before sending")
    deliverAt: Annotated[AwareDatetime | None, BeforeValidator(_date_time_text)] = Field(
        None, description="send at this instant (ISO 8601 with offset)"
    )
    attempts: StrictInt = Field(DEFAULT_ATTEMPTS, ge=1, le=25, description="most attempts before the job fails")
    backoff: Backoff = Field(default_factory=Backoff)
    priority: StrictInt | None = Field(None, ge=1, le=5, description="1 is most urgent")

    # A field validator (delay is validated before deliverAt), so the detail names `deliverAt`: a
    # model-level error would be reported as field `body`, which is also an email's `body` field.
    @field_validator("deliverAt")
    @classmethod
    def _one_schedule(cls, value: AwareDatetime | None, info: ValidationInfo) -> AwareDatetime | None:
        if value is not None and info.data.get("delay") is not None:
            raise ValueError("give either delay or deliverAt, not both")
        return value


class JobOptions(DeliveryOptions):
    """Options every job accepts."""

    webhookUrl: str | None = Field(None, max_length=2048, description="receives the signed final state")
    then: Annotated[TypedJob | None, BeforeValidator(_bounded_chain)] = Field(
        None,
        description="a follow-up job (`type` and that type's body and options, itself allowed a `then`), "
        f"started once this job has completed, never after a failure or a cancel; at most "
        f"{MAX_THEN_DEPTH} chained",
    )


def e164(value: str) -> str:
    if not value.startswith("+"):
        raise ValueError("must be an E.164 number such as +14155550100")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# What Python's email package (str.splitlines) breaks a header at: CR and LF, and also VT, FF, FS,
# GS, RS, NEL, LINE and PARAGRAPH SEPARATOR. In a subject the SMTP activity could never send them.
_LINE_BREAK = re.compile("[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


# Control characters (C0, DEL, C1), but for tab, LF and CR: text, not instructions to a terminal.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


_SURROGATE = re.compile("[\ud800-\udfff]")


def no_control(value: str) -> str:
    if found := _CONTROL.search(value):
        raise ValueError(
            f"must not contain control characters (U+{ord(found.group()):04X} at position {found.start()})"
        )
    return value


def one_line(value: str) -> str:
    # A line break in a header would let a client end it and write headers of its own.
    if _LINE_BREAK.search(value):
        raise ValueError("must be one line")
    return no_control(value)


# How deep webhook `data` may nest. Temporal's payload converter walks a job's input recursively
# (dataclasses.asdict), two Python frames a level: a few hundred levels overflowed the stack (a 500).
MAX_DATA_DEPTH = 100


def sendable(value: Any) -> Any:
    """Webhook `data` that can be started and sent: JSON's \\uD800 escapes give strings with unpaired
    surrogates, which no UTF-8 encoder can send; and at most MAX_DATA_DEPTH levels deep."""
    pending = [(value, 0)]
    while pending:  # a loop, not recursion: the body may nest as deep as the JSON parser goes
        item, depth = pending.pop()
        if isinstance(item, str):
            if found := _SURROGATE.search(item):
                raise ValueError(f"must not contain an unpaired surrogate (U+{ord(found.group()):04X})")
        elif isinstance(item, (dict, list)):
            if depth == MAX_DATA_DEPTH:
                raise ValueError(f"must not nest deeper than {MAX_DATA_DEPTH} levels of arrays and objects")
            children = [*item, *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return value


Subject = Annotated[str, Field(min_length=1, max_length=MAX_SUBJECT_CHARS), AfterValidator(one_line)]


Text = Annotated[str, AfterValidator(no_control)]  # CR and LF allowed


WebhookData = Annotated[Any, AfterValidator(sendable)]


class EmailFields(BaseModel):
    to: EmailStr
    subject: Subject
    body: Text = Field(min_length=1, max_length=MAX_EMAIL_BODY_CHARS)


# A userId (its digest names the user's workflow): letters, digits and `._:@-`, at most 128.
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
UserId = Annotated[
    str,
    Field(
        pattern=USER_ID_PATTERN,
        max_length=128,
        description="the client's own id for the user: letters, digits and `._:@-`, "
        "at most 128 characters, starting with a letter or digit",
    ),
]


# A notification's topic (the user's `topics` may opt out of it): letters, digits and `._:-`, at most 64.
TOPIC_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
Topic = Annotated[
    str,
    Field(
        pattern=TOPIC_PATTERN,
        max_length=64,
        description="a topic: letters, digits and `._:-`, at most 64 characters, starting with a letter or digit",
    ),
]
TOPIC_DESCRIPTION = "the notification's topic: the user's `topics` may opt out of it (needs `userId`)"
CRITICAL_DESCRIPTION = "ignores the user's topic opt-outs and quiet hours (never a channel opt-out)"


def _topic_needs_user(value: str | None, info: ValidationInfo) -> str | None:
    if value is not None and not info.data.get("userId"):
        raise ValueError("a topic needs a userId, whose preferences it is decided by")
    return value


class EmailUser(BaseModel):
    """Whom an email is for, where a body may say: that user's preferences decide it when it is sent."""

    userId: UserId | None = Field(
        None, description="the client's id for the recipient: the user's preferences (PUT /users) decide the email"
    )
    topic: Topic | None = Field(None, description=TOPIC_DESCRIPTION)
    critical: StrictBool = Field(False, description=CRITICAL_DESCRIPTION)

    _topic = field_validator("topic")(_topic_needs_user)


class SmsFields(BaseModel):
    phone: str = Field(max_length=32)
    message: Text = Field(min_length=1, max_length=MAX_SMS_CHARS)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return e164(value)


class SmsUser(BaseModel):
    """Whom an SMS is for, where a body may say: it counts against the user's hourly SMS quota too."""

    userId: UserId | None = Field(
        None,
        description="the client's id for the recipient: the SMS counts against this user's "
        "HERALD_SMS_PER_HOUR as well as the number's, and the user's preferences (PUT /users) decide it",
    )
    topic: Topic | None = Field(None, description=TOPIC_DESCRIPTION)
    critical: StrictBool = Field(False, description=CRITICAL_DESCRIPTION)

    _topic = field_validator("topic")(_topic_needs_user)


class EmailJob(JobOptions, EmailFields, EmailUser):
    pass


class SmsJob(JobOptions, SmsFields, SmsUser):
    pass


class CleanupJob(JobOptions):
    task: CleanupTaskName


class WebhookFields(BaseModel):
    url: str = Field(max_length=2048)
    # Required, but `null` is a legitimate body.
    data: WebhookData = Field(description="sent exactly as given as the JSON body")


class TypedEmailJob(JobOptions, EmailFields):
    type: Literal["email"]


class TypedSmsJob(JobOptions, SmsFields):
    type: Literal["sms"]


class TypedWebhookJob(JobOptions, WebhookFields):
    type: Literal["webhook"]


class TypedCleanupJob(JobOptions):
    type: Literal["cleanup"]
    task: CleanupTaskName


# One model for every place a body names a job of any type; errors read `job.to`, `job.type`.
TypedJob = Annotated[
    TypedEmailJob | TypedSmsJob | TypedWebhookJob | TypedCleanupJob,
    Field(discriminator="type"),
    WrapValidator(untagged("type", ("email", "sms", "webhook", "cleanup"))),
]


TypedJobBody = TypedEmailJob | TypedSmsJob | TypedWebhookJob | TypedCleanupJob


def complete(model: type[BaseModel]) -> None:
    """JobOptions' `then` names TypedJob, defined after the models that inherit it: build them now."""
    model.model_rebuild(force=True)
    for sub in model.__subclasses__():
        complete(sub)


complete(JobOptions)


class JobAccepted(Answer):
    jobId: str = Field(description="the job's id, also its Temporal workflow id")
    status: JobStatusWord = Field(description="`queued`, or `delayed` when the job has a `delay` or `deliverAt`")
    statusUrl: str = Field(description="`/jobs/{jobId}/status`")


class CancelAccepted(Answer):
    jobId: str
    cancelRequested: Literal[True] = Field(description="the cancel is recorded; the job reads `cancelled` shortly")
    statusUrl: str = Field(description="`/jobs/{jobId}/status`")


class Delivery(Answer):
    """One send attempt, as the attempt log keeps it."""

    attempt: int = Field(ge=1, description="1 for the first attempt")
    startedAt: str = Field(json_schema_extra=DATE_TIME)
    finishedAt: str = Field(json_schema_extra=DATE_TIME)
    succeeded: bool
    error: str | None = Field(None, description="why the attempt failed; null when it succeeded")
    retryable: bool = Field(
        True,
        description="false when the failure ended the job at once (an HTTP 4xx other "
        "than 408/429, a redirect, an SMTP 5xx, a refused destination)",
    )
    statusCode: int | None = Field(
        None,
        description="the HTTP status (SMS, webhook) or the SMTP code of a refusal; "
        "null without one (a connection error, a timeout, an accepted "
        "email)",
    )
    responseExcerpt: str | None = Field(None, description="the first 512 characters of the far side's answer")
    interrupted: Literal[True] | SkipJsonSchema[None] = absent_unless(
        "only on an attempt cut short by a crash of its worker (`error` says so): it may have reached the far "
        "side, which then saw the next attempt too, with the same idempotency key or `webhook-id`"
    )


class Callback(Answer):
    """The result callback to the job's `webhookUrl`."""

    url: str
    status: CallbackStatusWord = Field(
        description="`pending` until the job ends and the callback is delivered or has given up"
    )
    attempts: int = Field(ge=0, description="callback attempts made")
    error: str | None = Field(None, description="the last callback attempt's error")


class SendResult(Answer):
    """What an email, SMS or webhook job's successful send returned."""

    summary: str = Field(description="e.g. `HTTP 200` or the SMTP server's reply")
    providerId: str | int | None = Field(None, description="the email's Message-ID, or the SMS gateway's JSON `id`")
    statusCode: int | None = Field(None, description="the receiver's or gateway's HTTP status")
    responseExcerpt: str | None = Field(None, description="the first 512 characters of the answer")
    provider: Literal["primary", "fallback"] | None = Field(
        None,
        description="SMS and email: which provider delivered, `primary` or `fallback` (HERALD_SMS_FALLBACK_URL, "
        "HERALD_SMTP_FALLBACK_HOST: the last attempt of a job with 2 or more); null for a webhook",
    )


class CleanupResult(Answer):
    """What a cleanup job did."""

    task: Literal["delete_temp", "remove_old_logs", "expire_sessions"]
    directory: str
    removed: list[str] = Field(description="removed files, relative to `directory`")
    kept: int = Field(ge=0, description="files left in place")


class DigestResult(Answer):
    """What a notification that went out in its user's digest returned: the digest's id."""

    digestId: str = Field(description="the digest (one email) the notification went out in")


class ReportResult(Answer):
    """What a report job made."""

    reportType: Literal["notification-history"]
    notifications: int = Field(ge=0, description="how many of the user's jobs the report lists")
    resultUrl: str = Field(description="`/reports/{jobId}/result`: the report document (client key)")


DecisionRule = Literal["channel", "topic", "quiet_hours", "digest", "throttle", "release"]
DecisionOutcome = Literal["sent", "suppressed", "deferred", "digested", "released"]
SuppressedReason = Literal["channel_opt_out", "topic_opt_out"]


class Decision(Answer):
    """One rule applied to the job: why it went out, waited, or did not."""

    at: str = Field(json_schema_extra=DATE_TIME)
    rule: DecisionRule = Field(
        description="`channel`, `topic`, `quiet_hours` (the user's preferences), `digest`, `throttle` (an SMS "
        "quota), `release` (POST /jobs/{id}/release)"
    )
    outcome: DecisionOutcome
    until: str | SkipJsonSchema[None] = absent_unless("only on `deferred`: when the wait ends", **DATE_TIME)


DECISIONS_DESCRIPTION = (
    "the rules applied, in order: e.g. `quiet_hours` `deferred` until its end, then `quiet_hours` `sent`; "
    "`channel` `suppressed`; `release` `released`. Empty for a job no rule held"
)
SUPPRESSED_DESCRIPTION = "only when `suppressed`: `channel_opt_out` or `topic_opt_out`"
DIGEST_ID_DESCRIPTION = (
    "only for a notification in a digest: the digest it waits in (`delayed`, `nextAttemptAt` when the digest "
    "goes) or went out in (`result.digestId` too)"
)


class JobStatus(Answer):
    """A job's state in the words of GET /jobs/{id}/status."""

    id: str
    type: JobKind
    status: JobStatusWord
    attempts: int = Field(ge=0, description="attempts made so far (live while the job retries)")
    maxAttempts: int = Field(ge=1)
    result: SendResult | CleanupResult | ReportResult | DigestResult | None = Field(
        description="null until the job has completed"
    )
    error: str | None = Field(
        description="the last failed attempt's error while the job retries or once it has failed; null otherwise"
    )
    createdAt: str = Field(json_schema_extra=DATE_TIME)
    updatedAt: str = Field(json_schema_extra=DATE_TIME)
    nextAttemptAt: str | SkipJsonSchema[None] = absent_unless(
        "only while `delayed`: when the next attempt is due (end of a delay, `deliverAt`, or a retry backoff)",
        **DATE_TIME,
    )
    deliveries: list[Delivery] = Field(description="the attempt log, oldest first")
    callback: Callback | SkipJsonSchema[None] = absent_unless("only for a job with a `webhookUrl`")
    next: str | SkipJsonSchema[None] = absent_unless(
        "only once the job's `then` follow-up has started: its job id (`<id>-then`), a job of its own"
    )
    decisions: list[Decision] = Field(description=DECISIONS_DESCRIPTION)
    suppressedReason: SuppressedReason | SkipJsonSchema[None] = absent_unless(SUPPRESSED_DESCRIPTION)
    digestId: str | SkipJsonSchema[None] = absent_unless(DIGEST_ID_DESCRIPTION)


class BullMQJob(Answer):
    """A job's state in BullMQ's words, GET /jobs/{id}."""

    id: str
    status: BullMQStatusWord
    attempts: int = Field(ge=0)
    maxAttempts: int = Field(ge=1)
    error: str | SkipJsonSchema[None] = absent_unless("only when the job has `failed`: why")
    resultUrl: str | SkipJsonSchema[None] = absent_unless(
        "only for a `completed` report: `/reports/{id}/result`, the report document (client key)"
    )
    next: str | SkipJsonSchema[None] = absent_unless(
        "only once the job's `then` follow-up has started: its job id (`<id>-then`), a job of its own"
    )
    decisions: list[Decision] = Field(description=DECISIONS_DESCRIPTION)
    suppressedReason: SuppressedReason | SkipJsonSchema[None] = absent_unless(SUPPRESSED_DESCRIPTION)
    digestId: str | SkipJsonSchema[None] = absent_unless(DIGEST_ID_DESCRIPTION)


class ReleaseAccepted(Answer):
    jobId: str
    released: Literal[True] = Field(description="the release is recorded; the job runs now")
    statusUrl: str = Field(description="`/jobs/{jobId}/status`")


# ---- a job as read back from Temporal (api/jobs/service.py), before it is put in a family's words ----
@dataclass
class JobView:
    """A job's state dict (as its memo, result or batch keeps it) and what the reading derived."""

    id: str
    state: dict[str, Any]
    phase: Phase
    attempts: int
    error: str | None
    next_attempt_at: str | None
    # Waiting out a retry backoff of the send activity's retry policy, which the Temporal server keeps (after
    # an attempt lost with its worker; every backoff after the second attempt of a job from before
    # `releasable-backoffs`): a release cannot end it.
    server_backoff: bool = False
