"""A notification for a user, decided against the user's preferences just before its send
(workflows/job_tracking.py, `preferences-at-send`), on the time-skipping server: a 9-hour quiet window
waited out, daylight saving in Berlin, a change of preferences reaching a waiting job at once (no
polling), opt-outs, critical notifications, and POST /jobs/{id}/release's signal.

That server has no update-with-start: the user's workflow is started with its profile (UserInput), and
changed with its `put` update, as tests/workflows/test_entities.py does. tests/api/test_preferences.py
goes through the API on the dev server.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.jobs.starter import start_job
from common.models import (
    ENTITY_TASK_QUEUE,
    RELEASE_SIGNAL,
    Audience,
    JobState,
    QuietHours,
    UserInput,
    UserProfile,
    user_workflow_id,
)
from devstack.smtp_sink import read_outbox
from tests.support.temporal import (
    TEST_SERVER,
    email_job,
    events,
    herald_client,
    patch_ids,
    query_settled,
    register_search_attributes,
    running_workers,
    started_again_if_a_port_was_taken,
)
from workflows.patches import PREFERENCES_AT_SEND, RELEASABLE_WAITS
from workflows.user import UserWorkflow

NINE_HOURS = timedelta(hours=9)
# A job that is told or released ends within seconds, even on a loaded machine.
RESULT_WAIT_S = 30


def _hhmm(moment: datetime) -> str:
    return moment.strftime("%H:%M")


async def _quiet_now(env: WorkflowEnvironment) -> tuple[QuietHours, datetime]:
    """Quiet hours in UTC that began a minute ago (by the server's clock) and last 9 hours; their end."""
    now = (await env.get_current_time()).astimezone(UTC)
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    return QuietHours(start=_hhmm(start), end=_hhmm(start + NINE_HOURS)), start + NINE_HOURS


async def _user(client: Client, user_id: str, **preferences) -> WorkflowHandle:
    profile = UserProfile(user_id=user_id, email="ada@example.com", **preferences)
    return await client.start_workflow(
        UserWorkflow.run,
        UserInput(user_id=user_id, profile=profile),
        id=user_workflow_id(user_id),
        task_queue=ENTITY_TASK_QUEUE,
    )


def _user_id() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


async def _state(handle: WorkflowHandle) -> JobState:
    return await query_settled(handle, "state", JobState)


async def _until_waiting(env: WorkflowEnvironment, handle: WorkflowHandle) -> JobState:
    """The job's state once it waits (time stands still meanwhile)."""
    with env.auto_time_skipping_disabled():
        for _ in range(200):
            state = await _state(handle)
            if state is not None and state.phase == "delayed":
                return state
            await asyncio.sleep(0.05)
    raise AssertionError(f"never delayed: {state}")


async def _result_now(env: WorkflowEnvironment, handle: WorkflowHandle) -> JobState:
    """The job's end without skipping time: it must come from a signal, not from a timer."""
    with env.auto_time_skipping_disabled():
        return await asyncio.wait_for(handle.result(), RESULT_WAIT_S)


def _rules(state: JobState) -> list[tuple[str, str]]:
    return [(d.rule, d.outcome) for d in state.decisions]


async def _timers(handle: WorkflowHandle) -> list[timedelta]:
    started = await events(handle, EventType.EVENT_TYPE_TIMER_STARTED)
    return [t.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() for t in started]


async def _signals(handle: WorkflowHandle) -> list[str]:
    received = await events(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    return [e.workflow_execution_signaled_event_attributes.signal_name for e in received]


def _mails(smtp_sink, job_id: str) -> list:
    return [m for m in read_outbox(smtp_sink.outbox) if m["Message-ID"] == f"<{job_id}@herald>"]


async def test_inside_quiet_hours_it_waits_nine_hours_then_is_sent(time_env, make_settings, smtp_sink):
    client = herald_client(time_env)
    async with running_workers(client, make_settings()):
        quiet, end = await _quiet_now(time_env)
        user_id = _user_id()
        user = await _user(client, user_id, quiet_hours=quiet)
        request = email_job(audience=Audience(user_id=user_id, channel="email", topic="orders"))
        handle = (await start_job(client, request)).handle

        waiting = await _until_waiting(time_env, handle)
        assert waiting.not_before == end.isoformat() and waiting.waiting_on == "quiet_hours"
        assert _rules(waiting) == [("quiet_hours", "deferred")] and waiting.decisions[0].until == end.isoformat()
        assert _mails(smtp_sink, handle.id) == []
        # Registered with its user, who tells it of a change.
        assert await _signals(user) == ["job_waiting"]

        state = await handle.result()  # time skips to the end of the quiet hours
        assert state.phase == "completed" and state.attempts == 1
        assert _rules(state) == [("quiet_hours", "deferred"), ("quiet_hours", "sent")]
        assert len(_mails(smtp_sink, handle.id)) == 1
        [timer] = await _timers(handle)
        assert NINE_HOURS - timedelta(minutes=2) < timer <= NINE_HOURS
    assert PREFERENCES_AT_SEND in await patch_ids(handle)


async def test_quiet_hours_removed_send_the_waiting_job_at_once(time_env, make_settings, smtp_sink):
    client = herald_client(time_env)
    async with running_workers(client, make_settings()):
        quiet, end = await _quiet_now(time_env)
        user_id = _user_id()
        user = await _user(client, user_id, quiet_hours=quiet)
        handle = (await start_job(client, email_job(audience=Audience(user_id=user_id, channel="email")))).handle
        await _until_waiting(time_env, handle)
        with time_env.auto_time_skipping_disabled():
            await user.execute_update(UserWorkflow.put, UserProfile(user_id=user_id, email="ada@example.com"))
        state = await _result_now(time_env, handle)
        assert state.phase == "completed" and len(_mails(smtp_sink, handle.id)) == 1
        assert _rules(state) == [("quiet_hours", "deferred"), ("channel", "sent")]
        assert datetime.fromisoformat(state.updated_at) < end - timedelta(hours=8)
        assert "preferences_changed" in await _signals(handle)


@pytest.mark.parametrize(
    ("change", "reason"), [({"opt_out": ["email"]}, "channel_opt_out"), ({"topics": {"news": False}}, "topic_opt_out")]
)
async def test_an_opt_out_while_waiting_suppresses_it_at_once(time_env, make_settings, smtp_sink, change, reason):
    client = herald_client(time_env)
    async with running_workers(client, make_settings()):
        quiet, _ = await _quiet_now(time_env)
        user_id = _user_id()
        user = await _user(client, user_id, quiet_hours=quiet)
        audience = Audience(user_id=user_id, channel="email", topic="news")
        handle = (await start_job(client, email_job(audience=audience))).handle
        await _until_waiting(time_env, handle)
        with time_env.auto_time_skipping_disabled():
            profile = UserProfile(user_id=user_id, email="ada@example.com", quiet_hours=quiet, **change)
            await user.execute_update(UserWorkflow.put, profile)
        state = await _result_now(time_env, handle)
        assert state.phase == "suppressed" and state.suppressed_reason == reason
        assert _rules(state)[-1][1] == "suppressed" and state.attempts == 0
        assert _mails(smtp_sink, handle.id) == []
        # Final, not a dead letter: the run completed.
        assert (await handle.describe()).status.name == "COMPLETED"


async def test_opted_out_at_send_time_is_suppressed_and_critical_ignores_topics_and_quiet_hours(
    time_env, make_settings, smtp_sink
):
    client = herald_client(time_env)
    async with running_workers(client, make_settings()):
        quiet, _ = await _quiet_now(time_env)
        user_id = _user_id()
        await _user(client, user_id, quiet_hours=quiet, opt_out=["sms"], topics={"security": False})
        topic = (await start_job(client, email_job(audience=Audience(user_id, "email", topic="security")))).handle
        critical = (
            await start_job(client, email_job(audience=Audience(user_id, "email", topic="security", critical=True)))
        ).handle
        with time_env.auto_time_skipping_disabled():
            suppressed = await asyncio.wait_for(topic.result(), RESULT_WAIT_S)
            sent = await asyncio.wait_for(critical.result(), RESULT_WAIT_S)
        assert suppressed.phase == "suppressed" and suppressed.suppressed_reason == "topic_opt_out"
        assert _rules(suppressed) == [("topic", "suppressed")]
        assert sent.phase == "completed" and _rules(sent) == [("topic", "sent")]  # never deferred
        assert await _timers(critical) == []


async def test_a_release_ends_quiet_hours_and_a_delay_at_once(time_env, make_settings, smtp_sink):
    client = herald_client(time_env)
    async with running_workers(client, make_settings()):
        quiet, _ = await _quiet_now(time_env)
        user_id = _user_id()
        await _user(client, user_id, quiet_hours=quiet)
        quiet_job = (await start_job(client, email_job(audience=Audience(user_id, "email")))).handle
        delayed_job = (await start_job(client, email_job(delay_ms=3_600_000))).handle
        await _until_waiting(time_env, quiet_job)
        await _until_waiting(time_env, delayed_job)
        with time_env.auto_time_skipping_disabled():
            await quiet_job.signal(RELEASE_SIGNAL)
            await delayed_job.signal(RELEASE_SIGNAL)
        released = await _result_now(time_env, quiet_job)
        assert released.phase == "completed"
        assert _rules(released) == [("quiet_hours", "deferred"), ("release", "released"), ("quiet_hours", "sent")]
        undelayed = await _result_now(time_env, delayed_job)
        assert undelayed.phase == "completed" and _rules(undelayed) == [("release", "released")]
        assert len(_mails(smtp_sink, delayed_job.id)) == 1
    assert RELEASABLE_WAITS in await patch_ids(delayed_job)


async def test_daylight_saving_in_berlin_shortens_the_night(tmp_path, make_settings, smtp_sink):
    """On a time-skipping server of its own, moved to the night the clocks go forward in Berlin
    (2027-03-28, 02:00 CET → 03:00 CEST): quiet from 22:00 to 07:00 local, a notification at 23:00 CET
    waits 7 hours, not 8, and goes at 07:00 CEST (05:00 UTC)."""
    env = await started_again_if_a_port_was_taken(
        lambda: WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(TEST_SERVER))
    )
    try:
        await register_search_attributes(env)
        target = datetime(2027, 3, 27, 22, 0, tzinfo=UTC)  # 23:00 CET
        await env.sleep(target - await env.get_current_time())
        assert abs(await env.get_current_time() - target) < timedelta(minutes=1)
        client = herald_client(env)
        async with running_workers(client, make_settings()):
            user_id = _user_id()
            await _user(client, user_id, timezone="Europe/Berlin", quiet_hours=QuietHours(start="22:00", end="07:00"))
            handle = (await start_job(client, email_job(audience=Audience(user_id, "email")))).handle
            state = await asyncio.wait_for(handle.result(), RESULT_WAIT_S)
        assert state.phase == "completed"
        assert state.decisions[0].until == "2027-03-28T05:00:00+00:00"
        [timer] = await _timers(handle)
        assert timedelta(hours=6, minutes=55) < timer <= timedelta(hours=7)
    finally:
        await env.shutdown()
