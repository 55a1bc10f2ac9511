"""What the recorders (tests/replay/record*.py) share: the Temporal server they record on, Herald's
workers (and the API) running against it, the checks of how a run ended, and saving a history."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.jobs.starter import start_job
from api.main import create_app
from common.settings import Settings
from common.temporal import client_for
from devstack.smtp_sink import read_outbox
from tests.api.helpers import api_client
from tests.support.temporal import TEST_SERVER, register_search_attributes, running_workers

KEY = "record-key"  # the API key of a recording through the API


@contextlib.asynccontextmanager
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server, with Herald's search attributes."""
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(TEST_SERVER))
    try:
        await register_search_attributes(env)
        yield env
    finally:
        await env.shutdown()


@contextlib.asynccontextmanager
async def through_the_api(
    env: WorkflowEnvironment, settings: Settings
) -> AsyncIterator[tuple[Client, httpx.AsyncClient]]:
    """Herald's workers on `env`, and the API app in process taking the recording's key: Herald's client
    (to read and save what the API started) and the API's."""
    async with (
        running_workers(env.client, settings),
        api_client(create_app(settings), headers={"Authorization": f"Bearer {KEY}"}) as api,
    ):
        yield client_for(env.client, settings), api


async def save(handle: WorkflowHandle, out_dir: Path, name: str) -> None:
    """The run's history as OUT_DIR/<name>.json, as test_replay.py replays it."""
    history = await handle.fetch_history()
    # to_json() leaves the workflow id out and the test server does not fill the start event's
    # workflowId (newer servers do); put it there so the replay runs under the recorded id.
    started = history.events[0].workflow_execution_started_event_attributes
    started.workflow_id = started.workflow_id or handle.id
    (out_dir / f"{name}.json").write_text(history.to_json())
    print(f"{name}: {len(history.events)} events ({handle.id})")


async def save_workflow(client: Client, workflow_id: str, out_dir: Path, name: str) -> None:
    """The history of the latest run of `workflow_id` (save)."""
    await save(client.get_workflow_handle(workflow_id), out_dir, name)


class Recorder:
    """Starts jobs as the API does (api.jobs.starter) and saves their histories into `out_dir`."""

    def __init__(self, client: Client, out_dir: Path, outbox: Path) -> None:
        self.client, self.out_dir, self.outbox = client, out_dir, outbox

    async def start(self, request) -> WorkflowHandle:
        # The handle start_job returns: awaiting its result lets the test server skip time.
        return (await start_job(self.client, request)).handle

    async def save(self, name: str, handle: WorkflowHandle) -> None:
        await save(handle, self.out_dir, name)

    def sent_mails(self) -> int:
        return len(read_outbox(self.outbox))


async def failed(handle: WorkflowHandle) -> None:
    try:
        await handle.result()
    except WorkflowFailureError:
        return
    raise AssertionError(f"{handle.id} was expected to fail")


async def event_types(handle: WorkflowHandle) -> list[int]:
    return [e.event_type async for e in handle.fetch_history_events()]


async def wait_for_event(handle: WorkflowHandle, event_type: int, timeout_s: float = 10) -> None:
    # Polled in wall time: time skips only while a result is awaited.
    for _ in range(int(timeout_s / 0.05)):
        if event_type in await event_types(handle):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id}: no {EventType.Name(event_type)} within {timeout_s} s")


async def assert_run(handle: WorkflowHandle, status: WorkflowExecutionStatus) -> None:
    actual = (await handle.describe()).status
    assert actual == status, f"{handle.id}: {actual} instead of {status}"


async def only_child(client: Client, handle: WorkflowHandle) -> WorkflowHandle:
    """The one child workflow run `handle` started."""
    [child] = [
        e.child_workflow_execution_started_event_attributes.workflow_execution
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED
    ]
    return client.get_workflow_handle(child.workflow_id, run_id=child.run_id)
