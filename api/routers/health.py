"""Liveness and readiness, open to all (for load balancers and orchestrators)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Gateway
from api.errors import temporal_unavailable
from api.responses import Health, Ready, errors

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The API process is up", response_description="always, while the process runs",
            responses=errors())
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", summary="Temporal is reachable, so jobs can be accepted",
            response_description="Temporal answered a health check", responses=errors(503))
async def readyz(gateway: Gateway) -> Ready:
    if not await gateway.ready():
        raise temporal_unavailable(f"no answer from {gateway.settings.temporal_address}")
    return Ready(status="ready", temporal=gateway.settings.temporal_address)
