"""Liveness and readiness, open to all (for load balancers and orchestrators)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Gateway
from api.errors import temporal_unavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The API process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Temporal is reachable, so jobs can be accepted")
async def readyz(gateway: Gateway) -> dict:
    if not await gateway.ready():
        raise temporal_unavailable(f"no answer from {gateway.settings.temporal_address}")
    return {"status": "ready", "temporal": gateway.settings.temporal_address}
