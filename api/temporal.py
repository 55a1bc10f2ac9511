"""The API's one Temporal client, connected lazily so the API starts (and says 503) without Temporal."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RetryConfig, RPCError, RPCStatusCode

from api.errors import temporal_unavailable
from common.settings import Settings
from common.temporal import RPC_TIMEOUT, connect  # noqa: F401 - RPC_TIMEOUT: the API's routes take it from here

# Ride out a blip, but tell a client "503, retry later" within ~3 s rather than hold it for 10.
CLIENT_RETRIES = RetryConfig(max_elapsed_time_millis=3000, max_retries=6)
UNREACHABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}


class TemporalGateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    try:
                        self._client = await asyncio.wait_for(
                            connect(self.settings, retry_config=CLIENT_RETRIES),
                            timeout=RPC_TIMEOUT.total_seconds())
                    except (RuntimeError, OSError, asyncio.TimeoutError) as exc:
                        raise temporal_unavailable(str(exc) or "connection timed out") from exc
        return self._client

    async def ready(self) -> bool:
        try:
            client = await self.client()
            return await client.service_client.check_health(timeout=timedelta(seconds=3))
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False


def is_unreachable(exc: RPCError) -> bool:
    return exc.status in UNREACHABLE
