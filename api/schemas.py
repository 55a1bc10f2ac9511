"""Request bodies as clients send them, validated field by field (each bad field → one detail)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import phonenumbers
from pydantic import (
    AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, StrictInt, ValidationInfo, field_validator,
)

from common.models import CleanupTaskName

MAX_DELAY_MS = int(timedelta(days=366).total_seconds() * 1000)
MAX_BACKOFF_MS = int(timedelta(days=1).total_seconds() * 1000)


class Body(BaseModel):
    # Unknown fields are mistakes (a typo'd `delay` must not silently send now).
    model_config = ConfigDict(extra="forbid", populate_by_name=False)


class Backoff(Body):
    type: Literal["exponential", "fixed"] = "exponential"
    delay: StrictInt = Field(2000, ge=1, le=MAX_BACKOFF_MS, description="first wait between attempts, ms")


class JobOptions(Body):
    """Options every job accepts."""

    delay: StrictInt | None = Field(None, ge=0, le=MAX_DELAY_MS, description="wait this long (ms) before sending")
    deliverAt: AwareDatetime | None = Field(None, description="send at this instant (ISO 8601 with offset)")
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


class EmailFields(BaseModel):
    to: EmailStr
    subject: str = Field(min_length=1, max_length=998)
    body: str = Field(min_length=1, max_length=100_000)

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        # A newline in a header would let a client inject headers of its own.
        if "\r" in value or "\n" in value:
            raise ValueError("must be one line")
        return value


class SmsFields(BaseModel):
    phone: str = Field(max_length=32)
    message: str = Field(min_length=1, max_length=1600)

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
    data: Any = Field(description="sent exactly as given as the JSON body")



class DeadLetterFilter(Body):
    type: Literal["email", "sms", "webhook", "cleanup"] | None = Field(None, description="only this type's")
