"""Users: the contact data typed notifications resolve a `userId` against, kept in Temporal.

Each user is an entity workflow (workflows/user.py, id `user-<digest of the userId>`): PUT is an
update-with-start of its `put` update (the first PUT starts it), GET its `profile` query. No
second database: every API replica reads and writes the same user.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from api.core.auth import CallerTenant, Gateway, require_client_key
from api.core.errors import CREATE_ERRORS, ApiError, errors
from api.jobs.models import USER_ID_PATTERN
from api.users.models import User, UserPut
from api.users.service import read_profile, store_profile
from common.models import UserProfile

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
    return User(
        userId=profile.user_id,
        email=profile.email,
        phone=profile.phone,
        name=profile.name,
        locale=profile.locale,
        optOut=profile.opt_out,
        createdAt=profile.created_at or "",
        updatedAt=profile.updated_at or "",
    )


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
        user_id=user_id,
        email=body.email,
        phone=body.phone,
        name=body.name,
        locale=body.locale,
        opt_out=list(body.optOut),
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
