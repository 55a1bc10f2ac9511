"""The API's one Temporal client, connected lazily so the API starts (and says 503) without Temporal,
and how Temporal's errors are answered."""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from temporalio.client import Client, RPCTimeoutOrCancelledError, WorkflowQueryFailedError
from temporalio.service import RetryConfig, RPCError, RPCStatusCode

from api.core.errors import error_response, temporal_unavailable
from common.settings import Settings
from common.temporal import RPC_TIMEOUT, connect

log = logging.getLogger("herald.api")

# Ride out a blip, but tell a client "503, retry later" within ~3 s rather than hold it for 10.
CLIENT_RETRIES = RetryConfig(max_elapsed_time_millis=3000, max_retries=6)
UNREACHABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}


# Temporal admits a bounded number of updates in flight per workflow (10 by default). Workflows that
# many requests update at once (an SMS quota, an Idempotency-Key) get one update at a time from each
# API process, and a burst through several replicas that still meets the bound is tried again after
# a short jittered pause (with the same update id or claim: nothing is taken twice).
_update_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
BUSY_RETRIES = 8
_BUSY_PAUSE_S = 0.05


def one_update_at_a_time(workflow_id: str) -> asyncio.Lock:
    lock = _update_locks.get(workflow_id)
    if lock is None:
        lock = _update_locks[workflow_id] = asyncio.Lock()
    return lock


def too_many_updates(exc: RPCError) -> bool:
    return exc.status == RPCStatusCode.RESOURCE_EXHAUSTED


async def pause_when_busy(attempt: int) -> None:
    await asyncio.sleep(_BUSY_PAUSE_S * 2**attempt * (0.5 + random.random()))


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
                            connect(self.settings, retry_config=CLIENT_RETRIES), timeout=RPC_TIMEOUT.total_seconds()
                        )
                    except (TimeoutError, RuntimeError, OSError) as exc:
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


async def _on_rpc_error(request: Request, exc: RPCError) -> JSONResponse:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return error_response(404, "not_found", "no job with that id")
    if is_unreachable(exc):
        err = temporal_unavailable(exc.message)
        return error_response(err.status, err.error, err.message, headers=err.headers)
    log.error("Temporal refused a call: %s (%s)", exc.message, exc.status)
    return error_response(502, "temporal_error", f"Temporal refused the call: {exc.message}")


async def _on_rpc_timeout(request: Request, exc: RPCTimeoutOrCancelledError) -> JSONResponse:
    # An update or a query Temporal did not answer in time (no worker, or Temporal slow): as unreachable.
    err = temporal_unavailable(str(exc) or "Temporal did not answer in time")
    return error_response(err.status, err.error, err.message, headers=err.headers)


async def _on_query_failed(request: Request, exc: WorkflowQueryFailedError) -> JSONResponse:
    log.error("a workflow query failed: %s", exc)
    return error_response(502, "temporal_error", f"Temporal could not answer the query: {exc}")


def install_temporal_error_handlers(app: FastAPI) -> None:
    """Temporal's refusals and silences as the contract's errors: 404, 503 (with Retry-After), 502."""
    app.add_exception_handler(RPCError, _on_rpc_error)
    app.add_exception_handler(RPCTimeoutOrCancelledError, _on_rpc_timeout)
    app.add_exception_handler(WorkflowQueryFailedError, _on_query_failed)
