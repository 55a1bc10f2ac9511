"""Answer bodies as clients receive them, so /docs and /openapi.json show every one.

The routes validate what api/job_views.py builds into these models and answer with
`response_model_exclude_unset=True`: a key the view leaves out (`nextAttemptAt`, `callback`,
`error` on some routes) stays out of the answer, a key it sets to null stays null. The models
accept keys they do not declare (`extra="allow"`), so the wire is exactly what the view built;
tests/api/test_openapi.py fails when an answer carries a key this file does not document.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

# ---- each route family's status words (common/vocabulary.py maps the phases onto them) ---------
# GET /jobs/{id}/status
JobStatusWord = Literal["queued", "delayed", "processing", "completed", "failed", "cancelled"]
# GET /jobs/{id}: BullMQ's words
BullMQStatusWord = Literal["waiting", "delayed", "active", "completed", "failed", "cancelled"]
# GET /notifications/{id}: no word for "delayed"
NotificationStatusWord = Literal["queued", "processing", "success", "failed", "cancelled"]
CallbackStatusWord = Literal["pending", "delivered", "failed"]
JobType = Literal["email", "sms", "webhook", "cleanup", "report"]

DATE_TIME = {"format": "date-time"}


def absent_unless(description: str, **extra: Any) -> Any:
    """A key that is left out when it does not apply, and never null when it is there."""

    def schema_extra(schema: dict[str, Any]) -> None:
        schema.pop("default", None)
        schema.update(extra)

    return Field(None, description=description, json_schema_extra=schema_extra)


class Answer(BaseModel):
    # Keys the view adds and this file does not know yet pass through unchanged (see the docstring).
    model_config = ConfigDict(extra="allow")


# ---- 202 answers ---------------------------------------------------------------------------
class JobAccepted(Answer):
    jobId: str = Field(description="the job's id, also its Temporal workflow id")
    status: JobStatusWord = Field(description="`queued`, or `delayed` when the job has a `delay` or `deliverAt`")
    statusUrl: str = Field(description="`/jobs/{jobId}/status`")


class NotificationAccepted(Answer):
    notificationId: str = Field(description="the notification's id, also its Temporal workflow id")
    status: NotificationStatusWord = Field(description="`queued` (also while waiting on a `delay` or `deliverAt`)")
    statusUrl: str = Field(description="`/notifications/{notificationId}`")


class CancelAccepted(Answer):
    jobId: str
    cancelRequested: Literal[True] = Field(description="the cancel is recorded; the job reads `cancelled` shortly")
    statusUrl: str = Field(description="`/jobs/{jobId}/status`")


# ---- pieces of the status answers ------------------------------------------------------------
class Delivery(Answer):
    """One send attempt, as the attempt log keeps it."""

    attempt: int = Field(ge=1, description="1 for the first attempt")
    startedAt: str = Field(json_schema_extra=DATE_TIME)
    finishedAt: str = Field(json_schema_extra=DATE_TIME)
    succeeded: bool
    error: str | None = Field(None, description="why the attempt failed; null when it succeeded")
    retryable: bool = Field(True, description="false when the failure ended the job at once (an HTTP 4xx other "
                                              "than 408/429, a redirect, an SMTP 5xx, a refused destination)")
    statusCode: int | None = Field(None, description="the HTTP status (SMS, webhook) or the SMTP code of a refusal; "
                                                     "null without one (a connection error, a timeout, an accepted "
                                                     "email)")
    responseExcerpt: str | None = Field(None, description="the first 512 characters of the far side's answer")


class Callback(Answer):
    """The result callback to the job's `webhookUrl`."""

    url: str
    status: CallbackStatusWord = Field(description="`pending` until the job ends and the callback is delivered "
                                                   "or has given up")
    attempts: int = Field(ge=0, description="callback attempts made")
    error: str | None = Field(None, description="the last callback attempt's error")


class SendResult(Answer):
    """What an email, SMS or webhook job's successful send returned."""

    summary: str = Field(description="e.g. `HTTP 200` or the SMTP server's reply")
    providerId: str | int | None = Field(None, description="the email's Message-ID, or the SMS gateway's JSON `id`")
    statusCode: int | None = Field(None, description="the receiver's or gateway's HTTP status")
    responseExcerpt: str | None = Field(None, description="the first 512 characters of the answer")
    provider: Literal["primary", "fallback"] | None = Field(
        None, description="SMS and email: which provider delivered, `primary` or `fallback` (HERALD_SMS_FALLBACK_URL, "
                          "HERALD_SMTP_FALLBACK_HOST: the last attempt of a job with 2 or more); null for a webhook")


class CleanupResult(Answer):
    """What a cleanup job did."""

    task: Literal["delete_temp", "remove_old_logs", "expire_sessions"]
    directory: str
    removed: list[str] = Field(description="removed files, relative to `directory`")
    kept: int = Field(ge=0, description="files left in place")


# ---- status answers ------------------------------------------------------------------------
class ReportResult(Answer):
    """What a report job made."""

    reportType: Literal["notification-history"]
    notifications: int = Field(ge=0, description="how many of the user's jobs the report lists")
    resultUrl: str = Field(description="`/reports/{jobId}/result`: the report document (client key)")


class JobStatus(Answer):
    """A job's state in the words of GET /jobs/{id}/status."""

    id: str
    type: JobType
    status: JobStatusWord
    attempts: int = Field(ge=0, description="attempts made so far (live while the job retries)")
    maxAttempts: int = Field(ge=1)
    result: SendResult | CleanupResult | ReportResult | None = Field(description="null until the job has completed")
    error: str | None = Field(description="the last failed attempt's error while the job retries or once it "
                                         "has failed; null otherwise")
    createdAt: str = Field(json_schema_extra=DATE_TIME)
    updatedAt: str = Field(json_schema_extra=DATE_TIME)
    nextAttemptAt: str | SkipJsonSchema[None] = absent_unless(
        "only while `delayed`: when the next attempt is due (end of a delay, `deliverAt`, or a retry backoff)",
        **DATE_TIME)
    deliveries: list[Delivery] = Field(description="the attempt log, oldest first")
    callback: Callback | SkipJsonSchema[None] = absent_unless("only for a job with a `webhookUrl`")
    next: str | SkipJsonSchema[None] = absent_unless(
        "only once the job's `then` follow-up has started: its job id (`<id>-then`), a job of its own")


class BullMQJob(Answer):
    """A job's state in BullMQ's words, GET /jobs/{id}."""

    id: str
    status: BullMQStatusWord
    attempts: int = Field(ge=0)
    maxAttempts: int = Field(ge=1)
    error: str | SkipJsonSchema[None] = absent_unless("only when the job has `failed`: why")
    resultUrl: str | SkipJsonSchema[None] = absent_unless(
        "only for a `completed` report: `/reports/{id}/result`, the report document (client key)")
    next: str | SkipJsonSchema[None] = absent_unless(
        "only once the job's `then` follow-up has started: its job id (`<id>-then`), a job of its own")


class Notification(Answer):
    """A job's state in the words of GET /notifications/{id}."""

    id: str
    type: JobType
    recipient: str | None = Field(description="the address, E.164 number or URL; null for a cleanup job, a "
                                                   "report or a typed notification (resolved when sent)")
    status: NotificationStatusWord
    attempts: int = Field(ge=0)
    maxAttempts: int = Field(ge=1)
    createdAt: str = Field(json_schema_extra=DATE_TIME)
    updatedAt: str = Field(json_schema_extra=DATE_TIME)
    error: str | SkipJsonSchema[None] = absent_unless(
        "only after a failed attempt: its error, while the job retries or once it has failed")
    deliveries: list[Delivery] = Field(description="the attempt log, oldest first")
    callback: Callback | SkipJsonSchema[None] = absent_unless("only for a job with a `webhookUrl`")
    next: str | SkipJsonSchema[None] = absent_unless(
        "only once the job's `then` follow-up has started: its job id (`<id>-then`), a job of its own")


# ---- reports -------------------------------------------------------------------------------
class ReportAccepted(Answer):
    jobId: str = Field(description="`report-…`: the same for every request of this `userId` and `reportType`; "
                                   "while one runs, a request gets that one")
    statusUrl: str = Field(description="`/jobs/{jobId}` (the report's state in the `/jobs/{id}` words)")


class ReportEntry(Answer):
    """One of the user's jobs, with its latest run's state as visibility holds it."""

    jobId: str
    type: str = Field(description="the job's type (`email`, `sms`, `webhook`, ...)")
    status: JobStatusWord = Field(description="in the `/jobs/{id}/status` words; a job being sent reads as it "
                                              "started (`queued` or `delayed`)")
    createdAt: str = Field(json_schema_extra=DATE_TIME)
    finishedAt: str | SkipJsonSchema[None] = absent_unless("only once its run has closed", **DATE_TIME)
    error: str | SkipJsonSchema[None] = absent_unless("only when it `failed`: why")


class Report(Answer):
    """A report document, as GET /reports/{jobId}/result serves it."""

    jobId: str
    reportType: Literal["notification-history"]
    userId: str
    generatedAt: str = Field(json_schema_extra=DATE_TIME)
    total: int = Field(ge=0, description="how many jobs `notifications` lists")
    truncated: bool = Field(description="true when the user has more jobs than the report lists (the newest 1000)")
    counts: dict[JobStatusWord, int] = Field(description="how many of the listed jobs are in each status")
    notifications: list[ReportEntry] = Field(description="the user's jobs, newest first")


# ---- schedules -----------------------------------------------------------------------------
class ScheduleCreated(Answer):
    scheduleId: str = Field(description="the schedule's id, also its Temporal Schedule id; each run is a job of "
                                        "its own with the id `<scheduleId>-<start time>`")
    nextRunAt: str | None = Field(description="when the first run is due", json_schema_extra=DATE_TIME)


class ScheduleSummary(Answer):
    """A schedule as GET /admin/schedules lists it."""

    id: str
    cron: str = Field(description="five fields: minute hour day-of-month month day-of-week")
    timezone: str = Field(description="the IANA time zone the cron is read in")
    paused: bool
    builtin: bool = Field(description="true for the schedules Herald creates itself (`daily-cleanup`, "
                                      "`daily-log-cleanup`, `token-cleanup`)")
    nextRunAt: str | None = Field(description="when the next run is due; null while paused",
                                  json_schema_extra=DATE_TIME)
    lastRunAt: str | SkipJsonSchema[None] = absent_unless("only once it has run: when the latest run started",
                                                          **DATE_TIME)
    lastJobId: str | SkipJsonSchema[None] = absent_unless(
        "only once it has run: the latest run's job id, readable on every status route")


class ScheduleDetail(ScheduleSummary):
    """A schedule with its job, GET /schedules/{id} and the admin actions' answer."""

    job: dict[str, Any] = Field(description="the job each run starts, as given to POST /schedules (`type`, that "
                                            "type's fields and options; a phone number normalised)")


class ScheduleDeleted(Answer):
    scheduleId: str
    deleted: Literal[True] = Field(description="no more runs; a run already started goes on")


class ScheduleList(Answer):
    items: list[ScheduleSummary] = Field(description="the built-in schedules first, then the others by id")


# ---- open routes ---------------------------------------------------------------------------
class Health(Answer):
    status: Literal["ok"]


class Ready(Answer):
    status: Literal["ready"]
    temporal: str = Field(description="the Temporal frontend the API reached (HERALD_TEMPORAL_ADDRESS)")


# ---- errors --------------------------------------------------------------------------------
class FieldError(BaseModel):
    field: str = Field(description="dotted path from the body's root (`to`, `backoff.type`); `(body)` for the "
                                   "body itself")
    message: str


class Error(BaseModel):
    """Every error the API answers."""

    error: str = Field(description="a stable code, e.g. `validation_error`, `not_found`")
    message: str = Field(description="for humans")
    details: list[FieldError] = Field(description="one item per bad field for `validation_error`; else empty")


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "`validation_error` (one detail per bad field) or `invalid_json`", "content": {
        "application/json": {"examples": {
            "validation_error": {"value": {
                "error": "validation_error", "message": "invalid request: attempts: Input should be less than or "
                "equal to 25; backoff.type: Input should be 'exponential' or 'fixed'",
                "details": [{"field": "attempts", "message": "Input should be less than or equal to 25"},
                            {"field": "backoff.type", "message": "Input should be 'exponential' or 'fixed'"}]}},
            "invalid_json": {"value": {"error": "invalid_json", "message": "the body is not valid JSON",
                                       "details": []}},
        }}}},
    401: {"description": "`unauthorized`: no or wrong client key (checked before the body)",
          "headers": {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}},
    403: {"description": "`forbidden`: a client key on an admin route (they take the admin token)"},
    404: {"description": "`not_found`: no job with that id"},
    409: {"description": "`not_cancellable`: the job is being sent or is already final"},
    413: {"description": "`payload_too_large`: the body is over HERALD_MAX_BODY_BYTES (checked first)"},
    429: {"description": "`rate_limited`: the recipient number (or user) had HERALD_SMS_PER_HOUR SMS in the last "
                         "hour; nothing was started. `Retry-After`: seconds until a slot frees",
          "headers": _RETRY_AFTER},
    502: {"description": "`temporal_error`: Temporal refused the call"},
    503: {"description": "`temporal_unavailable`: Temporal is unreachable; nothing was started",
          "headers": _RETRY_AFTER},
    "default": {"description": "any other error (`method_not_allowed`, `internal_error`), in the same shape"},
}


def errors(*statuses: int, say: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: the error body under each of `statuses`, and under `default`;
    `say` gives a status a description of the route's own."""
    answers = {status: {"model": Error, **ERRORS[status]} for status in (*statuses, "default")}
    for status, description in (say or {}).items():
        if status in answers:
            answers[status] = answers[status] | {"description": description}
    return answers


# ---- the dead-letter queue (admin) ------------------------------------------------------------
class DeadLetterItem(Answer):
    jobId: str = Field(description="the job's id; redrive and discard take it")
    type: JobType | str = Field(description="the job's type")
    error: str | None = Field(description="why the job failed (its last attempt's error)")
    attempts: int = Field(description="attempts made before it gave up")
    failedAt: str | None = Field(description="when the job failed", json_schema_extra=DATE_TIME)


class DeadLetterList(Answer):
    items: list[DeadLetterItem] = Field(description="newest first")
    nextCursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class Redriven(Answer):
    jobId: str = Field(description="the same job id, running again from the start")
    status: JobStatusWord = Field(description="`queued`")
    statusUrl: str = Field(description="`/jobs/{jobId}/status`")


class Discarded(Answer):
    jobId: str
    discarded: Literal[True]


class RedrivenAll(Answer):
    redriven: int = Field(description="how many dead letters were started again")


# ---- stats and the latest jobs (admin) --------------------------------------------------------
class StatusCounts(Answer):
    """How many jobs of one type are in each `/jobs/{id}/status` word, each job under its latest run."""

    queued: int = Field(ge=0, description="waiting for a worker; also a running job that started `queued` (see "
                                          "`processing`)")
    delayed: int = Field(ge=0, description="started with a `delay` or `deliverAt` and not finished yet")
    processing: int = Field(ge=0, description="always 0 here: an attempt's start is not written to visibility, so "
                                              "a job being sent counts under the status it started with")
    completed: int = Field(ge=0)
    failed: int = Field(ge=0, description="failed jobs, dead letters and discarded ones alike (a redriven job "
                                          "counts under its new run)")
    cancelled: int = Field(ge=0)


class Stats(Answer):
    counts: dict[JobType, StatusCounts] = Field(description="every job type, each with every status word")
    dlq: int = Field(ge=0, description="dead letters: what GET /admin/dlq lists")
    approximate: Literal[True] | SkipJsonSchema[None] = absent_unless(
        "only past 2 000 running jobs that are not `queued`, or 5 000 failed runs kept: the counts are then "
        "estimated (see docs/api.md)")


class RecentJob(Answer):
    jobId: str = Field(description="the job's id, also its Temporal workflow id")
    runId: str = Field(description="the Temporal run id of the job's latest run")
    type: JobType
    status: JobStatusWord = Field(description="as GET /jobs/{id}/status reads it")
    createdAt: str = Field(json_schema_extra=DATE_TIME)
    finishedAt: str | SkipJsonSchema[None] = absent_unless("only once the run has closed: when", **DATE_TIME)


class RecentJobs(Answer):
    items: list[RecentJob] = Field(description="newest first, one per job id")


# ---- users and typed notifications -------------------------------------------------------------
class User(Answer):
    """A user's contact data, as GET /users/{userId} and PUT /users/{userId} answer."""

    userId: str
    email: str | None = Field(description="where typed notifications are sent")
    phone: str | None = Field(description="E.164")
    name: str | None
    locale: str | None = Field(description="BCP 47 language tag; the templates' translation where one exists")
    optOut: list[Literal["email", "sms"]] = Field(description="channels the user receives nothing on")
    createdAt: str = Field(description="the first PUT", json_schema_extra=DATE_TIME)
    updatedAt: str = Field(description="the latest PUT", json_schema_extra=DATE_TIME)


class TypedNotificationAccepted(Answer):
    jobId: str = Field(description="the notification's id, also its Temporal workflow id; every status route "
                                   "answers for it")
    statusUrl: str = Field(description="`/notifications/{jobId}`")


# ---- batches ----------------------------------------------------------------------------------------
class BatchAccepted(Answer):
    batchId: str = Field(description="the batch's id, also its Temporal workflow id")
    jobIds: list[str] = Field(description="each item's job id (`<batchId>-<n>`, n from 0), in item order; each "
                                          "answers on every job status route")
    statusUrl: str = Field(description="`/batches/{batchId}`")


class BatchCounts(Answer):
    queued: int = Field(description="items waiting to be sent (also on a delay or a retry backoff)")
    processing: int = Field(description="items being sent right now")
    success: int
    failed: int = Field(description="items that failed for good; each is a dead letter of its own")
    cancelled: int


class BatchStatus(Answer):
    """A batch: its items counted by state, in the words of GET /notifications/{id}."""

    id: str
    channel: Literal["email", "sms", "webhook"]
    total: int = Field(description="the number of items")
    counts: BatchCounts
    done: bool = Field(description="true once every item is final (success, failed or cancelled)")
