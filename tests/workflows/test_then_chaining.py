"""A job's `then` in the time-skipping environment: the follow-up starts only once its parent has
completed (after the parent's own day-long delay), and its own delay counts from its own start."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from api.jobs.starter import email_job, start_job
from common.models import FollowUp, then_id
from devstack.smtp_sink import read_outbox
from tests.support.temporal import (
    TEST_SERVER,
    events,
    herald_client,
    job_spec,
    register_search_attributes,
    running_workers,
)


@pytest_asyncio.fixture
async def own_time_env():
    """A time-skipping server of this test's own: the follow-up outlives its parent (ABANDON), and
    the test server then keeps the parent's closed run busy with the child's completion, which
    stalls time skipping for the next test (about a minute per backoff) on a shared server."""
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(TEST_SERVER))
    await register_search_attributes(env)
    try:
        yield env
    finally:
        await env.shutdown()


def _email(job_id: str, to: str, subject: str, **spec_fields):
    spec = replace(job_spec("email", recipient=to, **spec_fields), job_id=job_id)
    return email_job(spec, to, subject, "body")


async def test_the_follow_up_starts_after_the_parent_completed_and_waits_its_own_delay(
    own_time_env, make_settings, smtp_sink
):
    client = herald_client(own_time_env)
    follow_up = FollowUp(notification=_email("", "second@example.com", "Second", delay_ms=3_600_000))
    parent = _email("email-chain-parent-1", "first@example.com", "First", delay_ms=86_400_000, then=follow_up)
    async with running_workers(client, make_settings()):
        handle = (await start_job(client, parent)).handle
        final = await handle.result()  # a day passes in no time
        child_id = then_id(handle.id)
        assert final.next == child_id and final.phase == "completed"
        # The parent's mail first; the follow-up's may follow already (waiting for the result skips time too).
        assert [m["Subject"] for m in read_outbox(smtp_sink.outbox)] in (["First"], ["First", "Second"])

        child = client.get_workflow_handle(child_id)
        [closed] = await events(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
        [child_started] = await events(child, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
        # Started by its parent once the parent's send had completed, and outliving it.
        assert (
            child_started.workflow_execution_started_event_attributes.parent_workflow_execution.workflow_id == handle.id
        )
        assert child_started.event_time.ToDatetime() <= closed.event_time.ToDatetime()

        # It waits its own hour, from its own start, on a durable timer. (That it is then sent is
        # tests/api/test_then.py's, on the dev server: whether this test server skips the time of a
        # child whose parent has closed depends on timing.)
        async def child_timer():
            return await events(child, EventType.EVENT_TYPE_TIMER_STARTED)

        timers = await _eventually(child_timer)
        assert [t.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() for t in timers] == [
            timedelta(hours=1)
        ]
        # Nothing of it went out before its parent's had.
        assert read_outbox(smtp_sink.outbox)[0]["Subject"] == "First"


async def _eventually(probe, timeout_s: float = 10):
    for _ in range(int(timeout_s / 0.05)):
        if found := await probe():
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("not within the time")
