"""Request bodies as clients send them, validated field by field (each bad field → one detail)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal, Union

import phonenumbers
from pydantic import (
    AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, EmailStr, Field, StrictInt, ValidationError,
    ValidationInfo, ValidatorFunctionWrapHandler, WrapValidator, field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from common.models import CleanupTaskName
from common.schedules import DEFAULT_TIMEZONE, validate_cron, validate_timezone

MAX_DELAY_MS = int(timedelta(days=366).total_seconds() * 1000)
MAX_BACKOFF_MS = int(timedelta(days=1).total_seconds() * 1000)
_DATE_TIME_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")


def _date_time_text(value: Any) -> Any:
    """Only ISO 8601 text: pydantic would also read a number (or numeric text) as a Unix time, in
    seconds or milliseconds by its size, so a `deliverAt` of 60000 would mean 1970."""
    if value is not None and not (isinstance(value, str) and _DATE_TIME_START.match(value)):
        raise PydanticCustomError("datetime_type", "Input should be an ISO 8601 date-time with an offset, "
                                                   "e.g. 2030-01-01T09:00:00Z")
    return value


class Body(BaseModel):
    # Unknown fields are mistakes (a typo'd `delay` must not silently send now).
    model_config = ConfigDict(extra="forbid", populate_by_name=False)


class Backoff(Body):
    type: Literal["exponential", "fixed"] = "exponential"
    delay: StrictInt = Field(2000, ge=1, le=MAX_BACKOFF_MS, description="first wait between attempts, ms")


class JobOptions(Body):
    """Options every job accepts."""

    delay: StrictInt | None = Field(None, ge=0, le=MAX_DELAY_MS, description="wait this long (ms) before sending")
    deliverAt: Annotated[AwareDatetime | None, BeforeValidator(_date_time_text)] = Field(
        None, description="send at this instant (ISO 8601 with offset)")
    attempts: StrictInt = Field(3, ge=1, le=25, description="most attempts before the job fails")
    backoff: Backoff = Field(default_factory=Backoff)
    priority: StrictInt | None = Field(None, ge=1, le=5, description="1 is most urgent")
    webhookUrl: str | None = Field(None, max_length=2048, description="receives the signed final state")

    # A field validator (delay is validated before deliverAt), so the detail names `deliverAt`: a
    # model-level error would be reported as field `body`, which is also an email's `body` field.
    @field_validator("deliverAt")
    @classmethod
    def _one_schedule(cls, value: AwareDatetime | None, info: ValidationInfo) -> AwareDatetime | None:
        if value is not None and info.data.get("delay") is not None:
            raise ValueError("give either delay or deliverAt, not both")
        return value


def _e164(value: str) -> str:
    if not value.startswith("+"):
        raise ValueError("must be an E.164 number such as +14155550100")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# Constants, not settings: the body models are built once, at import, and the OpenAPI schema states
# these limits (maxLength) for every deployment alike (tests/docs checks it does not vary).
MAX_SUBJECT_CHARS = 998  # RFC 5322's longest line
MAX_EMAIL_BODY_CHARS = 100_000
MAX_SMS_CHARS = 1600  # ten concatenated segments

# What Python's email package (str.splitlines) breaks a header at: CR and LF, and also VT, FF, FS,
# GS, RS, NEL, LINE and PARAGRAPH SEPARATOR. In a subject the SMTP activity could never send them.
_LINE_BREAK = re.compile("[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# Control characters (C0, DEL, C1), but for tab, LF and CR: text, not instructions to a terminal.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_control(value: str) -> str:
    if found := _CONTROL.search(value):
        raise ValueError(f"must not contain control characters (U+{ord(found.group()):04X} at position "
                         f"{found.start()})")
    return value


def _one_line(value: str) -> str:
    # A line break in a header would let a client end it and write headers of its own.
    if _LINE_BREAK.search(value):
        raise ValueError("must be one line")
    return _no_control(value)


# How deep webhook `data` may nest. Temporal's payload converter walks a job's input recursively
# (dataclasses.asdict), two Python frames a level: a few hundred levels overflowed the stack (a 500).
MAX_DATA_DEPTH = 100


def _sendable(value: Any) -> Any:
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


Subject = Annotated[str, Field(min_length=1, max_length=MAX_SUBJECT_CHARS), AfterValidator(_one_line)]
Text = Annotated[str, AfterValidator(_no_control)]  # CR and LF allowed
WebhookData = Annotated[Any, AfterValidator(_sendable)]


class EmailFields(BaseModel):
    to: EmailStr
    subject: Subject
    body: Text = Field(min_length=1, max_length=MAX_EMAIL_BODY_CHARS)


class SmsFields(BaseModel):
    phone: str = Field(max_length=32)
    message: Text = Field(min_length=1, max_length=MAX_SMS_CHARS)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return _e164(value)


class EmailJob(JobOptions, EmailFields):
    pass


class SmsJob(JobOptions, SmsFields):
    pass


class CleanupJob(JobOptions):
    task: CleanupTaskName


class NotifyEmail(JobOptions, EmailFields):
    pass


class NotifySms(JobOptions, SmsFields):
    pass


class NotifyWebhook(JobOptions):
    url: str = Field(max_length=2048)
    # Required, but `null` is a legitimate body.
    data: WebhookData = Field(description="sent exactly as given as the JSON body")


# ---- a job of any type, {"type": "email" | "sms" | "webhook" | "cleanup", ...}: a schedule's job ------
class TypedEmailJob(JobOptions, EmailFields):
    type: Literal["email"]


class TypedSmsJob(JobOptions, SmsFields):
    type: Literal["sms"]


class TypedWebhookJob(JobOptions):
    type: Literal["webhook"]
    url: str = Field(max_length=2048)
    data: WebhookData = Field(description="sent exactly as given as the JSON body")


class TypedCleanupJob(JobOptions):
    type: Literal["cleanup"]
    task: CleanupTaskName


def _errors_at(errors: list[InitErrorDetails], title: str = "job") -> ValidationError:
    return ValidationError.from_exception_data(title, errors)


def _untagged(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A typed job's errors at the body's own paths (`job.to`), not pydantic's (`job.email.to`)."""
    try:
        return handler(value)
    except ValidationError as exc:
        errors: list[InitErrorDetails] = []
        for error in exc.errors():
            loc = error["loc"]
            if error["type"] == "union_tag_not_found":
                errors.append(InitErrorDetails(type="missing", loc=("type",), input=value))
                continue
            if error["type"] == "union_tag_invalid":
                message = "must be one of 'email', 'sms', 'webhook', 'cleanup'"
                errors.append(InitErrorDetails(type=PydanticCustomError("union_tag_invalid", message),
                                               loc=("type",), input=error["input"]))
                continue
            if loc and loc[0] in ("email", "sms", "webhook", "cleanup"):
                loc = loc[1:]
            # The same type and message, without the context object each built-in type requires.
            errors.append(InitErrorDetails(type=PydanticCustomError(error["type"], error["msg"]), loc=loc,
                                           input=error["input"]))
        raise _errors_at(errors, exc.title) from None


# One model for every place a body names a job of any type; errors read `job.to`, `job.type`.
TypedJob = Annotated[
    Union[TypedEmailJob, TypedSmsJob, TypedWebhookJob, TypedCleanupJob],
    Field(discriminator="type"),
    WrapValidator(_untagged),
]


class ScheduleCreate(Body):
    cron: str = Field(max_length=256, description="five fields: minute hour day-of-month month day-of-week",
                      examples=["0 9 * * 1-5"])
    timezone: str = Field(DEFAULT_TIMEZONE, max_length=64, description="the IANA time zone the cron is read in",
                          examples=["Europe/Berlin"])
    job: TypedJob = Field(description="the job each run starts: `type` and that type's body and options, "
                                      "without `delay` or `deliverAt`")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return validate_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return validate_timezone(value)

    @field_validator("job")
    @classmethod
    def _runs_when_due(cls, job: Any) -> Any:
        # Each run starts when the schedule fires; a delay would only shift the cron.
        errors = [InitErrorDetails(type=PydanticCustomError("value_error", "not allowed in a schedule's job: "
                                                            "the cron says when each run starts"),
                                   loc=(name,), input=getattr(job, name))
                  for name in ("delay", "deliverAt") if getattr(job, name) is not None]
        if errors:
            raise _errors_at(errors)
        return job



class DeadLetterFilter(Body):
    type: Literal["email", "sms", "webhook", "cleanup"] | None = Field(None, description="only this type's")
