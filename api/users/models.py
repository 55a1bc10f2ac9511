"""PUT /users/{userId}'s body and the user as GET and PUT answer it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, EmailStr, Field, StrictBool, StrictInt, field_validator, model_validator

from api.core.models import DATE_TIME, Answer, Body
from api.jobs.models import TOPIC_PATTERN, Topic, e164, one_line
from common.preferences import MAX_DIGEST_EVERY_S, MIN_DIGEST_EVERY_S, parse_hhmm, zone

# The channels a user can opt out of (activities/users.py refuses to send on them).
OptOutChannel = Literal["email", "sms"]
LOCALE_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$"
MAX_TOPICS = 100


def _hhmm(value: str) -> str:
    parse_hhmm(value)
    return value


HHMM = Annotated[
    str,
    Field(max_length=5, description="a time of day, `HH:MM` (00:00 to 23:59)", examples=["22:00"]),
    AfterValidator(_hhmm),
]


def _timezone(value: str) -> str:
    zone(value)
    return value


Timezone = Annotated[
    str,
    Field(min_length=1, max_length=64, description="an IANA time zone, e.g. `Europe/Berlin`"),
    AfterValidator(_timezone),
]


class QuietHoursBody(Body):
    """Quiet hours in the user's `timezone`: notifications wait until `end` (critical ones never wait)."""

    start: HHMM
    end: HHMM = Field(description="`HH:MM`; before `start` for quiet hours spanning midnight (22:00 to 07:00)")


class Channels(Body):
    """Channels the user receives notifications on: false opts out of the channel."""

    email: StrictBool = True
    sms: StrictBool = True


class DigestBody(Body):
    """Topics collected into one email: daily `at` `HH:MM` (local time), or `every` N seconds (60-86400)."""

    topics: list[Topic] = Field(min_length=1, max_length=MAX_TOPICS)
    at: HHMM | None = None
    every: StrictInt | None = Field(None, ge=MIN_DIGEST_EVERY_S, le=MAX_DIGEST_EVERY_S, description="seconds")

    @model_validator(mode="after")
    def _one_schedule(self) -> DigestBody:
        if (self.at is None) == (self.every is None):
            raise ValueError("give exactly one of `at` and `every`")
        return self


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
        default_factory=list, max_length=2, description="channels the user receives nothing on (as `channels`)"
    )
    timezone: Timezone = Field("UTC", description="IANA time zone of `quietHours` and a digest's `at`")
    quietHours: QuietHoursBody | None = Field(None, description="when notifications wait; null: never")
    channels: Channels | None = Field(
        None, description="`{email, sms}`: false opts out of the channel (together with `optOut`)"
    )
    topics: dict[Annotated[str, Field(pattern=TOPIC_PATTERN, max_length=64)], StrictBool] = Field(
        default_factory=dict,
        max_length=MAX_TOPICS,
        description="`{TOPIC: bool}`: false opts out of the topic (critical notifications still come)",
    )
    digest: DigestBody | None = Field(None, description="topics collected into one email; null: none")

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
    timezone: str = Field(description="IANA time zone")
    quietHours: QuietHoursBody | None
    channels: Channels = Field(description="false: opted out of the channel")
    topics: dict[str, bool] = Field(description="false: opted out of the topic")
    digest: DigestBody | None
    createdAt: str = Field(description="the first PUT", json_schema_extra=DATE_TIME)
    updatedAt: str = Field(description="the latest PUT", json_schema_extra=DATE_TIME)


class OpenDigestItem(Answer):
    """A user's open digest (the contract's shape): the notifications of one topic waiting to go out as one
    email."""

    digestId: str = Field(
        description="the digest's id: each of its items' `digestId` (and `result.digestId` once sent)"
    )
    topic: str
    sendAt: str | None = Field(description="when it is sent (ISO 8601)", json_schema_extra=DATE_TIME)
    jobIds: list[str] = Field(max_length=1000, description="its items' job ids in the order they joined, at most 1,000")


class OpenDigest(Answer):
    """A user's open digest as the previous release answered it (`digests`, deprecated: read `items`)."""

    digestId: str = Field(
        description="the digest's id: each of its items' `digestId` (and `result.digestId` once sent)"
    )
    topic: str
    items: int = Field(ge=1, le=1000, description="notifications in it, at most 1,000")
    nextAt: str | None = Field(description="when it goes out", json_schema_extra=DATE_TIME)


class Digests(Answer):
    """GET /users/{userId}/digests"""

    userId: str
    items: list[OpenDigestItem] = Field(description="one per digested topic with notifications waiting")
    digests: list[OpenDigest] = Field(
        description=(
            "Deprecated: read `items`. The same digests in the previous release's shape (`items` a count, "
            "`nextAt` for `sendAt`), kept for its clients"
        ),
        deprecated=True,
    )


class DigestSendAccepted(Answer):
    userId: str
    digestId: str
    sendRequested: Literal[True] = Field(description="the digest goes out now; its items complete once it has")
