"""Liveness and readiness, open to all (for load balancers and orchestrators)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import Field

from api.core.auth import Gateway
from api.core.errors import errors, temporal_unavailable
from api.core.models import Answer
from common.models import INTAKE_TASK_QUEUE


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
    summary="Temporal is reachable and the intake worker polls, so jobs can be accepted",
    response_description="Temporal answered a health check, and the API's intake worker polls",
    responses=errors(503),
)
async def readyz(gateway: Gateway, request: Request) -> Ready:
    if not await gateway.ready():
        raise temporal_unavailable(f"no answer from {gateway.settings.temporal_address}")
    # Served with its lifespan, the app accepts jobs only once its intake worker polls (api/core/intake.py).
    intake = getattr(request.app.state, "intake", None)
    if intake is not None and not intake.polling:
        raise temporal_unavailable(
            f"the API's intake worker is not polling {INTAKE_TASK_QUEUE} on {gateway.settings.temporal_address} yet"
        )
    return Ready(status="ready", temporal=gateway.settings.temporal_address)
