"""Request bodies as clients send them, validated field by field (each bad field → one detail)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Callable, Literal, Union

import phonenumbers
from pydantic import (
    AfterValidator, AwareDatetime, BaseModel, RootModel, BeforeValidator, ConfigDict, EmailStr, Field, StrictInt, ValidationError,
    ValidationInfo, ValidatorFunctionWrapHandler, WrapValidator, field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from common.models import CleanupTaskName
from common.schedules import DEFAULT_TIMEZONE, validate_cron, validate_timezone
from common.settings import MAX_EMAIL_BODY_CHARS, MAX_SMS_CHARS, MAX_SUBJECT_CHARS

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


class Body(BaseModel):
    # Unknown fields are mistakes (a typo'd `delay` must not silently send now).
    model_config = ConfigDict(extra="forbid", populate_by_name=False)


class Backoff(Body):
    type: Literal["exponential", "fixed"] = "exponential"
    delay: StrictInt = Field(2000, ge=1, le=MAX_BACKOFF_MS, description="first wait between attempts, ms")


class DeliveryOptions(Body):
    """When and how persistently to send: the options of every job, and those a batch's items share."""

    delay: StrictInt | None = Field(None, ge=0, le=MAX_DELAY_MS, description="wait this long (ms) before sending")
    deliverAt: Annotated[AwareDatetime | None, BeforeValidator(_date_time_text)] = Field(
        None, description="send at this instant (ISO 8601 with offset)")
    attempts: StrictInt = Field(3, ge=1, le=25, description="most attempts before the job fails")
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
        None, description="a follow-up job (`type` and that type's body and options, itself allowed a `then`), "
                          f"started once this job has completed, never after a failure or a cancel; at most "
                          f"{MAX_THEN_DEPTH} chained")


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


# The schema's maxLength of these fields: ceilings, the same for every deployment. An operator can
# set lower limits (HERALD_MAX_*_CHARS), checked when a job is built (api/job_starter.py).

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


class WebhookFields(BaseModel):
    url: str = Field(max_length=2048)
    # Required, but `null` is a legitimate body.
    data: WebhookData = Field(description="sent exactly as given as the JSON body")


class NotifyWebhook(JobOptions, WebhookFields):
    pass


# ---- a job of any type, {"type": "email" | "sms" | "webhook" | "cleanup", ...}: a schedule's job ------
class TypedEmailJob(JobOptions, EmailFields):
    type: Literal["email"]


class TypedSmsJob(JobOptions, SmsFields):
    type: Literal["sms"]


class TypedWebhookJob(JobOptions, WebhookFields):
    type: Literal["webhook"]


class TypedCleanupJob(JobOptions):
    type: Literal["cleanup"]
    task: CleanupTaskName


def _errors_at(errors: list[InitErrorDetails], title: str = "job") -> ValidationError:
    return ValidationError.from_exception_data(title, errors)


def _untagged(tag: str, tags: tuple[str, ...], title: str | None = None) -> Callable[..., Any]:
    """A tagged union's errors at the body's own paths (`job.to`, `items.3.to`, and `type` or `channel`
    for the tag itself), not pydantic's (`job.email.to`, `email.items.3.to`)."""
    message = "must be one of " + ", ".join(f"'{name}'" for name in tags)

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            errors: list[InitErrorDetails] = []
            for error in exc.errors():
                loc = error["loc"]
                # The tag of this union (loc ()), not of a `then` inside it, whose errors arrive renamed.
                if error["type"] == "union_tag_not_found" and not loc:
                    errors.append(InitErrorDetails(type="missing", loc=(tag,), input=value))
                    continue
                if error["type"] == "union_tag_invalid" and not loc:
                    errors.append(InitErrorDetails(type=PydanticCustomError("union_tag_invalid", message),
                                                   loc=(tag,), input=error["input"]))
                    continue
                if loc and loc[0] in tags:
                    loc = loc[1:]
                # The same type and message, without the context object each built-in type requires.
                errors.append(InitErrorDetails(type=PydanticCustomError(error["type"], error["msg"]), loc=loc,
                                               input=error["input"]))
            raise _errors_at(errors, title or exc.title) from None

    return validate


# One model for every place a body names a job of any type; errors read `job.to`, `job.type`.
TypedJob = Annotated[
    Union[TypedEmailJob, TypedSmsJob, TypedWebhookJob, TypedCleanupJob],
    Field(discriminator="type"),
    WrapValidator(_untagged("type", ("email", "sms", "webhook", "cleanup"))),
]


TypedJobBody = TypedEmailJob | TypedSmsJob | TypedWebhookJob | TypedCleanupJob


def _complete(model: type[BaseModel]) -> None:
    """JobOptions' `then` names TypedJob, defined after the models that inherit it: build them now."""
    model.model_rebuild(force=True)
    for sub in model.__subclasses__():
        _complete(sub)


_complete(JobOptions)


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
    type: Literal["email", "sms", "webhook", "cleanup", "report"] | None = Field(None, description="only this type's")


# ---- users and typed notifications (api/routers/users.py, api/routers/notifications.py) ------------
# A userId (its digest names the user's workflow): letters, digits and `._:@-`, at most 128.
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, max_length=128,
                              description="the client's own id for the user: letters, digits and `._:@-`, "
                                          "at most 128 characters, starting with a letter or digit")]
LOCALE_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$"


class UserPut(Body):
    """A user's contact data (PUT replaces all of it): at least one of `email`, `phone`."""

    email: EmailStr | None = Field(None, description="where typed notifications are sent")
    phone: str | None = Field(None, max_length=32, description="E.164, e.g. +14155550100")
    name: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_one_line)] | None = Field(
        None, description="how the emails greet the user")
    locale: str | None = Field(None, pattern=LOCALE_PATTERN, max_length=32,
                               description="BCP 47 language tag (`de`, `de-AT`): the templates' translation "
                                           "where one exists, else English")
    optOut: list[Literal["email", "sms"]] = Field(
        default_factory=list, max_length=2, description="channels the user receives nothing on")

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return None if value is None else _e164(value)

    @field_validator("optOut")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


RESET_URL = re.compile(r"^https?://[^\s]+$", re.IGNORECASE)
ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:#/-]{0,63}$")
# What each type needs in `data` (DESIGN.md): field → (check, message).
REQUIRED_DATA: dict[str, dict[str, tuple[Any, str]]] = {
    "welcome": {},
    "password-reset": {"resetUrl": (lambda v: isinstance(v, str) and len(v) <= 2048 and RESET_URL.match(v),
                                    "must be an http(s) URL of at most 2048 characters")},
    "order-confirmed": {"orderId": (lambda v: isinstance(v, str) and ORDER_ID.match(v)
                                    or isinstance(v, int) and not isinstance(v, bool),
                                    "must be an integer, or 1-64 letters, digits and ._:#/- (starting with a "
                                    "letter or digit)")},
}
MAX_TYPED_DATA_KEYS = 50


class TypedNotification(JobOptions):
    """A typed notification: an email from the type's templates to the user `userId`."""

    type: Literal["welcome", "password-reset", "order-confirmed"] = Field(
        description="which email: `password-reset` runs at priority 1, the others at 5")
    userId: UserId = Field(description="a user given with PUT /users/{userId}; resolved when the email is sent")
    data: dict[str, Any] | None = Field(
        None, validate_default=True, max_length=MAX_TYPED_DATA_KEYS,
        description="the template's values: `password-reset` needs `resetUrl` (http or https), "
                    "`order-confirmed` needs `orderId`; `welcome` needs nothing")

    @field_validator("priority")
    @classmethod
    def _no_priority(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("set by the type: password-reset runs at 1, the others at 5")
        return value

    @field_validator("data")
    @classmethod
    def _needs(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any]:
        value = _sendable(value or {})
        kind = info.data.get("type")
        errors: list[InitErrorDetails] = []
        for name, (check, message) in REQUIRED_DATA.get(kind, {}).items():
            if name not in value:
                errors.append(InitErrorDetails(type=PydanticCustomError("missing", f"required by type {kind!r}"),
                                               loc=(name,), input=value))
            elif not check(value[name]):
                errors.append(InitErrorDetails(type=PydanticCustomError("value_error", message),
                                               loc=(name,), input=value[name]))
        if errors:
            raise _errors_at(errors, "data")
        return value


_complete(TypedNotification)


# ---- POST /notify/batch: one channel, up to HERALD_MAX_BATCH_ITEMS items, options for them all -------
# The schema's ceiling; the setting (at most this) is checked by the route.
MAX_BATCH_ITEMS_CEILING = 5000


class BatchOptions(DeliveryOptions):
    """The options a batch's items share: those of a job, without `webhookUrl` and `then` (each item
    retries on its own: `attempts` counts an item's attempts)."""

    def job_options(self) -> JobOptions:
        """The same options as a job's (for the spec every item shares)."""
        return JobOptions.model_construct(delay=self.delay, deliverAt=self.deliverAt, attempts=self.attempts,
                                          backoff=self.backoff, priority=self.priority)


class EmailItem(Body, EmailFields):
    pass


class SmsItem(Body, SmsFields):
    pass


class WebhookItem(Body, WebhookFields):
    pass


def _items(model: Any) -> Any:
    return Field(min_length=1, max_length=MAX_BATCH_ITEMS_CEILING,
                 description="the items, each the body of the channel's `/notify/*` route without options; at "
                             "most HERALD_MAX_BATCH_ITEMS (default 1000)")


class EmailBatch(BatchOptions):
    channel: Literal["email"]
    items: list[EmailItem] = _items(EmailItem)


class SmsBatch(BatchOptions):
    channel: Literal["sms"]
    items: list[SmsItem] = _items(SmsItem)


class WebhookBatch(BatchOptions):
    channel: Literal["webhook"]
    items: list[WebhookItem] = _items(WebhookItem)


class NotifyBatch(RootModel[Annotated[Union[EmailBatch, SmsBatch, WebhookBatch], Field(discriminator="channel"),
                                     WrapValidator(_untagged("channel", ("email", "sms", "webhook"), "batch"))]]):
    """`channel` and that channel's items, with the options they share."""


# ---- reports (api/routers/reports.py) --------------------------------------------------------------
class ReportCreate(JobOptions):
    userId: UserId = Field(description="whose report: the userId of the user's typed notifications")
    reportType: Literal["notification-history"] = Field(
        description="`notification-history`: the user's notifications and their states")
