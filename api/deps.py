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


def require_client_key(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    given = credentials.credentials if credentials else ""
    # compare_digest against every key: no timing hint about which prefix matched.
    if not any(secrets.compare_digest(given.encode(), key.encode()) for key in settings.api_keys) or not given:
        raise ApiError(401, "unauthorized", "a valid client key is required: Authorization: Bearer KEY",
                       headers={"WWW-Authenticate": "Bearer"})
    return given


def get_job_starter(gateway: Annotated[TemporalGateway, Depends(get_gateway)],
                    settings: Annotated[Settings, Depends(get_settings)]) -> JobStarter:
    return JobStarter(gateway, settings)


SettingsDep = Annotated[Settings, Depends(get_settings)]
Gateway = Annotated[TemporalGateway, Depends(get_gateway)]
Jobs = Annotated[JobStarter, Depends(get_job_starter)]
