"""The /notify bodies, the typed notification's (POST /notifications), and their answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import Field, StrictBool, ValidationInfo, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

from api.core.models import DATE_TIME, Answer, absent_unless, errors_at
from api.jobs.models import (
    CRITICAL_DESCRIPTION,
    DECISIONS_DESCRIPTION,
    DIGEST_ID_DESCRIPTION,
    SUPPRESSED_DESCRIPTION,
    Callback,
    Decision,
    Delivery,
    EmailFields,
    EmailUser,
    JobOptions,
    NotificationStatusWord,
    SmsFields,
    SmsUser,
    SuppressedReason,
    Topic,
    UserId,
    WebhookFields,
    complete,
    sendable,
)
from common.models import JobKind


class NotifyEmail(JobOptions, EmailFields, EmailUser):
    pass


class NotifySms(JobOptions, SmsFields, SmsUser):
    pass


class NotifyWebhook(JobOptions, WebhookFields):
    pass


RESET_URL = re.compile(r"^https?://[^\s]+$", re.IGNORECASE)
ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:#/-]{0,63}$")


@dataclass(frozen=True)
class TypedType:
    """What a typed notification's type decides: its task-queue priority (1 is first: a password reset
    overtakes a backlog of the others), and what `data` must hold (DESIGN.md): field → (check, message)."""

    priority: int
    needs: dict[str, tuple[Callable[[Any], Any], str]]
    # Critical: never held by the user's topic opt-outs or quiet hours (DESIGN.md).
    critical: bool = False


# The one list of the typed notifications' types (each has its templates in templates/).
TYPED_TYPES: dict[str, TypedType] = {
    "welcome": TypedType(5, {}),
    "password-reset": TypedType(
        1,
        critical=True,
        needs={
            "resetUrl": (
                lambda v: isinstance(v, str) and len(v) <= 2048 and RESET_URL.match(v),
                "must be an http(s) URL of at most 2048 characters",
            )
        },
    ),
    "order-confirmed": TypedType(
        5,
        needs={
            "orderId": (
                lambda v: (
                    (isinstance(v, str) and ORDER_ID.match(v)) or (isinstance(v, int) and not isinstance(v, bool))
                ),
                "must be an integer, or 1-64 letters, digits and ._:#/- (starting with a letter or digit)",
            )
        },
    ),
}
if TYPE_CHECKING:
    TypedNotificationType: TypeAlias = str
else:
    TypedNotificationType = Literal[tuple(TYPED_TYPES)]
MAX_TYPED_DATA_KEYS = 50


class TypedNotification(JobOptions):
    """A typed notification: an email from the type's templates to the user `userId`."""

    type: TypedNotificationType = Field(description="which email: `password-reset` runs at priority 1, the others at 5")
    userId: UserId = Field(description="a user given with PUT /users/{userId}; resolved when the email is sent")
    data: dict[str, Any] | None = Field(
        None,
        validate_default=True,
        max_length=MAX_TYPED_DATA_KEYS,
        description="the template's values: `password-reset` needs `resetUrl` (http or https), "
        "`order-confirmed` needs `orderId`; `welcome` needs nothing",
    )
    topic: Topic | None = Field(
        None, description="the topic the user's `topics` may opt out of; by default the notification's `type`"
    )
    critical: StrictBool = Field(False, description=CRITICAL_DESCRIPTION + "; `password-reset` always is")

    @field_validator("priority")
    @classmethod
    def _no_priority(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("set by the type: password-reset runs at 1, the others at 5")
        return value

    @field_validator("data")
    @classmethod
    def _needs(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any]:
        value = sendable(value or {})
        kind = info.data.get("type")
        errors: list[InitErrorDetails] = []
        for name, (check, message) in (TYPED_TYPES[kind].needs if kind in TYPED_TYPES else {}).items():
            if name not in value:
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError("missing", f"required by type {kind!r}"), loc=(name,), input=value
                    )
                )
            elif not check(value[name]):
                errors.append(
                    InitErrorDetails(type=PydanticCustomError("value_error", message), loc=(name,), input=value[name])
                )
        if errors:
            raise errors_at(errors, "data")
        return value


complete(TypedNotification)


class NotificationAccepted(Answer):
    notificationId: str = Field(description="the notification's id, also its Temporal workflow id")
    status: NotificationStatusWord = Field(description="`queued` (also while waiting on a `delay` or `deliverAt`)")
    statusUrl: str = Field(description="`/notifications/{notificationId}`")


class Notification(Answer):
    """A job's state in the words of GET /notifications/{id}."""

    id: str
    type: JobKind
    recipient: str | None = Field(
        description="the address, E.164 number or URL; null for a cleanup job, a "
        "report or a typed notification (resolved when sent)"
    )
    status: NotificationStatusWord
    attempts: int = Field(ge=0)
    maxAttempts: int = Field(ge=1)
    createdAt: str = Field(json_schema_extra=DATE_TIME)
    updatedAt: str = Field(json_schema_extra=DATE_TIME)
    error: str | SkipJsonSchema[None] = absent_unless(
        "only after a failed attempt: its error, while the job retries or once it has failed"
    )
    deliveries: list[Delivery] = Field(description="the attempt log, oldest first")
    callback: Callback | SkipJsonSchema[None] = absent_unless("only for a job with a `webhookUrl`")
    next: str | SkipJsonSchema[None] = absent_unless(
        "only once the job's `then` follow-up has started: its job id (`<id>-then`), a job of its own"
    )
    decisions: list[Decision] = Field(description=DECISIONS_DESCRIPTION)
    suppressedReason: SuppressedReason | SkipJsonSchema[None] = absent_unless(SUPPRESSED_DESCRIPTION)
    digestId: str | SkipJsonSchema[None] = absent_unless(DIGEST_ID_DESCRIPTION)


class TypedNotificationAccepted(Answer):
    jobId: str = Field(
        description="the notification's id, also its Temporal workflow id; every status route answers for it"
    )
    statusUrl: str = Field(description="`/notifications/{jobId}`")
