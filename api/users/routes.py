"""Users: the contact data typed notifications resolve a `userId` against, kept in Temporal.

Each user is an entity workflow (workflows/user.py, id `user-<digest of the userId>`): PUT is an
update-with-start of its `put` update (the first PUT starts it), GET its `profile` query. No
second database: every API replica reads and writes the same user. The user's open digests (one
workflow per digested topic, workflows/digest.py) are listed and sent now from here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from api.core.auth import CallerTenant, Gateway, require_client_key
from api.core.errors import CREATE_ERRORS, ApiError, errors
from api.jobs.models import USER_ID_PATTERN
from api.users.models import (
    Channels,
    DigestBody,
    Digests,
    DigestSendAccepted,
    OpenDigest,
    OpenDigestItem,
    QuietHoursBody,
    User,
    UserPut,
)
from api.users.service import open_digests, read_profile, send_digest_now, store_profile
from common.models import DigestPreference, QuietHours, UserProfile
from common.preferences import DEFAULT_TIMEZONE

router = APIRouter(prefix="/users", tags=["users"], dependencies=[Depends(require_client_key)])

UserIdPath = Annotated[
    str,
    Path(
        alias="userId",
        pattern=USER_ID_PATTERN,
        max_length=128,
        description="the client's own id for the user: letters, digits and `._:@-`, at "
        "most 128 characters, starting with a letter or digit",
    ),
]


def _answer(profile: UserProfile) -> User:
    quiet, digest = profile.quiet_hours, profile.digest
    return User(
        userId=profile.user_id,
        email=profile.email,
        phone=profile.phone,
        name=profile.name,
        locale=profile.locale,
        optOut=profile.opt_out,
        timezone=profile.timezone or DEFAULT_TIMEZONE,
        quietHours=QuietHoursBody(start=quiet.start, end=quiet.end) if quiet else None,
        channels=Channels(email="email" not in profile.opt_out, sms="sms" not in profile.opt_out),
        topics=profile.topics,
        digest=DigestBody(topics=digest.topics, at=digest.at, every=digest.every) if digest else None,
        createdAt=profile.created_at or "",
        updatedAt=profile.updated_at or "",
    )


def _preferences(body: UserPut) -> dict[str, Any]:
    """The body's preferences as the profile keeps them; `channels` and `optOut` both opt out of channels."""
    opted_out = set(body.optOut)
    if body.channels is not None:
        opted_out |= {channel for channel, on in body.channels.model_dump().items() if not on}
    return {
        "opt_out": [channel for channel in ("email", "sms") if channel in opted_out],
        "timezone": body.timezone,
        "quiet_hours": QuietHours(start=body.quietHours.start, end=body.quietHours.end) if body.quietHours else None,
        "topics": dict(body.topics),
        "digest": (
            DigestPreference(topics=list(body.digest.topics), at=body.digest.at, every=body.digest.every)
            if body.digest
            else None
        ),
    }


def _no_user(user_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no user with id {user_id!r}")


@router.put(
    "/{userId}",
    summary="Create or replace a user's contact data",
    response_description="The user as stored",
    responses=CREATE_ERRORS,
)
async def put_user(user_id: UserIdPath, body: UserPut, gateway: Gateway, tenant: CallerTenant) -> User:
    if not (body.email or body.phone):
        message = "give at least one of email, phone"
        raise ApiError(
            400,
            "validation_error",
            f"invalid request: {message}",
            [{"field": "email", "message": message}, {"field": "phone", "message": message}],
        )
    profile = UserProfile(
        user_id=user_id, email=body.email, phone=body.phone, name=body.name, locale=body.locale, **_preferences(body)
    )
    return _answer(await store_profile(await gateway.client(), profile, tenant))


@router.get(
    "/{userId}",
    summary="A user's contact data",
    response_description="The user as stored",
    responses=errors(400, 401, 404, 502, 503, say={404: "`not_found`: no user with that id"}),
)
async def get_user(user_id: UserIdPath, gateway: Gateway, tenant: CallerTenant) -> User:
    profile = await read_profile(await gateway.client(), user_id, tenant)
    if profile is None:
        raise _no_user(user_id)
    return _answer(profile)


DigestIdPath = Annotated[
    str,
    Path(
        alias="digestId",
        pattern=r"^digest-[0-9a-f]{32}-[0-9]{1,9}$",
        description="a digest's id, as GET /users/{userId}/digests and a digested notification's `digestId` give it",
    ),
]


@router.get(
    "/{userId}/digests",
    summary="A user's open digests",
    response_description="One per digested topic with notifications waiting: when it is sent, and its job ids",
    responses=errors(400, 401, 404, 502, 503, say={404: "`not_found`: no user with that id"}),
)
async def list_digests(user_id: UserIdPath, gateway: Gateway, tenant: CallerTenant) -> Digests:
    """The user's open digests in `items`: each one's `digestId`, `topic`, `sendAt` (when it is sent) and
    `jobIds` (its items' job ids in the order they joined). `digests` is deprecated: the same digests in the
    previous release's shape (`items` a count, `nextAt`), kept for its clients."""
    client = await gateway.client()
    profile = await read_profile(client, user_id, tenant)
    if profile is None:
        raise _no_user(user_id)
    found = await open_digests(client, profile, tenant)
    return Digests(
        userId=user_id,
        items=[OpenDigestItem(digestId=d.digest_id, topic=d.topic, sendAt=d.next_at, jobIds=d.job_ids) for d in found],
        # The previous release's shape, for its clients (deprecated in the schema).
        digests=[OpenDigest(digestId=d.digest_id, topic=d.topic, items=d.items, nextAt=d.next_at) for d in found],
    )


@router.post(
    "/{userId}/digests/{digestId}/send",
    status_code=202,
    summary="Send a user's open digest now",
    response_description="The digest goes out now; each of its notifications completes with its digestId",
    responses=errors(
        400, 401, 404, 502, 503, say={404: "`not_found`: no such user, or no open digest of the user with that id"}
    ),
)
async def send_digest(
    user_id: UserIdPath, digest_id: DigestIdPath, gateway: Gateway, tenant: CallerTenant
) -> DigestSendAccepted:
    client = await gateway.client()
    profile = await read_profile(client, user_id, tenant)
    if profile is None:
        raise _no_user(user_id)
    # Only the user's own open digests (in the tenant's scope): another's id is unknown here.
    if digest_id not in {d.digest_id for d in await open_digests(client, profile, tenant)}:
        raise ApiError(404, "not_found", f"user {user_id!r} has no open digest {digest_id!r}")
    await send_digest_now(client, digest_id)
    return DigestSendAccepted(userId=user_id, digestId=digest_id, sendRequested=True)
