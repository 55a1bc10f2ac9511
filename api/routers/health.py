"""Liveness and readiness, open to all (for load balancers and orchestrators)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import get_gateway
from api.errors import temporal_unavailable
from api.temporal import TemporalGateway

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The API process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Temporal is reachable, so jobs can be accepted")
async def readyz(gateway: Annotated[TemporalGateway, Depends(get_gateway)]) -> dict:
    if not await gateway.ready():
        raise temporal_unavailable(f"no answer from {gateway.settings.temporal_address}")
    return {"status": "ready", "temporal": gateway.settings.temporal_address}
