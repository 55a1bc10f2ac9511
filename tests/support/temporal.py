"""Helpers for driving Herald workflows directly in tests."""

from __future__ import annotations

import contextlib
import socket
import uuid
from datetime import datetime, timezone
from typing import Any, AsyncIterator

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from common.models import ATTEMPT_SIGNAL, STATE_MEMO_KEY, JobSpec, RetrySpec
from common.settings import Settings
from common.temporal import client_for
from worker import build_workers

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_spec(kind: str, *, family: str = "jobs", attempts: int = 3, backoff: str = "exponential",
             backoff_ms: int = 2000, **fields: Any) -> JobSpec:
    return JobSpec(
        job_id=f"{kind}-{uuid.uuid4().hex[:12]}", kind=kind, family=family,
        created_at=datetime.now(timezone.utc).isoformat(),
        retry=RetrySpec(max_attempts=attempts, backoff=backoff, delay_ms=backoff_ms), **fields,
    )


@contextlib.asynccontextmanager
async def running_workers(client: Client, settings: Settings) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for w in build_workers(client_for(client, settings), settings):
            await stack.enter_async_context(w)
        yield


async def job_state(handle: WorkflowHandle) -> dict[str, Any]:
    return (await (await handle.describe()).memo())[STATE_MEMO_KEY]


async def events(handle: WorkflowHandle, event_type: int) -> list:
    return [e async for e in handle.fetch_history_events() if e.event_type == event_type]


async def attempt_report_times(handle: WorkflowHandle) -> list[datetime]:
    """When (server time, from history) each attempt's end was reported to the workflow."""
    signaled = await events(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    return [e.event_time.ToDatetime(timezone.utc) for e in signaled
            if e.workflow_execution_signaled_event_attributes.signal_name == ATTEMPT_SIGNAL]


def gaps_seconds(times: list[datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in zip(times, times[1:])]
