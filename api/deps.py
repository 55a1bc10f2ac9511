"""What routes get injected: settings, the Temporal gateway, the job starter, the client key check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from api.job_starter import JobStarter
from api.temporal import TemporalGateway
from common.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="a client key from HERALD_API_KEYS")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_gateway(request: Request) -> TemporalGateway:
    return request.app.state.gateway


def _is_client_key(settings: Settings, given: str) -> bool:
    # compare_digest against every key: no timing hint about which prefix matched.
    return bool(given) and any(secrets.compare_digest(given.encode(), key.encode()) for key in settings.api_keys)


def _unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "a valid client key is required: Authorization: Bearer KEY",
                    headers={"WWW-Authenticate": "Bearer"})


def require_client_key(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    given = credentials.credentials if credentials else ""
    if not _is_client_key(settings, given):
        raise _unauthorized()
    return given


def unauthorized_caller(request: Request) -> ApiError | None:
    """The 401 owed to a caller of a client route without a valid key, or None.

    FastAPI parses and validates a body before it runs dependencies, so a bad body would
    otherwise be answered (400) before the missing key (401).
    """
    route = request.scope.get("route")
    if not any(getattr(d, "dependency", None) is require_client_key for d in getattr(route, "dependencies", [])):
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and _is_client_key(get_settings(request), token.strip()):
        return None
    return _unauthorized()


def get_job_starter(gateway: Annotated[TemporalGateway, Depends(get_gateway)],
                    settings: Annotated[Settings, Depends(get_settings)]) -> JobStarter:
    return JobStarter(gateway, settings)


SettingsDep = Annotated[Settings, Depends(get_settings)]
Gateway = Annotated[TemporalGateway, Depends(get_gateway)]
Jobs = Annotated[JobStarter, Depends(get_job_starter)]
