"""PUT /users/{userId}'s body and the user as GET and PUT answer it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, EmailStr, Field, field_validator

from api.core.models import DATE_TIME, Answer, Body
from api.jobs.models import e164, one_line

# The channels a user can opt out of (activities/users.py refuses to send on them).
OptOutChannel = Literal["email", "sms"]
LOCALE_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$"


class UserPut(Body):
    """A user's contact data (PUT replaces all of it): at least one of `email`, `phone`."""

    email: EmailStr | None = Field(None, description="where typed notifications are sent")
    phone: str | None = Field(None, max_length=32, description="E.164, e.g. +14155550100")
    name: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(one_line)] | None = Field(
        None, description="how the emails greet the user"
    )
    locale: str | None = Field(
        None,
        pattern=LOCALE_PATTERN,
        max_length=32,
        description="BCP 47 language tag (`de`, `de-AT`): the templates' translation where one exists, else English",
    )
    optOut: list[OptOutChannel] = Field(
        default_factory=list, max_length=2, description="channels the user receives nothing on"
    )

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return None if value is None else e164(value)

    @field_validator("optOut")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class User(Answer):
    """A user's contact data, as GET /users/{userId} and PUT /users/{userId} answer."""

    userId: str
    email: str | None = Field(description="where typed notifications are sent")
    phone: str | None = Field(description="E.164")
    name: str | None
    locale: str | None = Field(description="BCP 47 language tag; the templates' translation where one exists")
    optOut: list[OptOutChannel] = Field(description="channels the user receives nothing on")
    createdAt: str = Field(description="the first PUT", json_schema_extra=DATE_TIME)
    updatedAt: str = Field(description="the latest PUT", json_schema_extra=DATE_TIME)
