"""Liveness and readiness, open to all (for load balancers and orchestrators)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import Field

from api.core.auth import Gateway
from api.core.errors import errors, temporal_unavailable
from api.core.models import Answer


class Health(Answer):
    status: Literal["ok"]


class Ready(Answer):
    status: Literal["ready"]
    temporal: str = Field(description="the Temporal frontend the API reached (HERALD_TEMPORAL_ADDRESS)")


router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="The API process is up",
    response_description="always, while the process runs",
    responses=errors(),
)
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Temporal is reachable, so jobs can be accepted",
    response_description="Temporal answered a health check",
    responses=errors(503),
)
async def readyz(gateway: Gateway) -> Ready:
    if not await gateway.ready():
        raise temporal_unavailable(f"no answer from {gateway.settings.temporal_address}")
    return Ready(status="ready", temporal=gateway.settings.temporal_address)
