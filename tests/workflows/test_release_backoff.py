"""POST /jobs/{id}/release in a retry backoff after the first (the `releasable-backoffs` patch of
workflows/job_tracking.py), on the time-skipping server: each attempt after the first is an activity of
its own and each backoff a timer of the workflow, which the `release` signal ends: the next attempt
starts at once. Attempt counts and timings are read from the run's history.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.jobs.service import load_job, not_waiting_reason
from api.jobs.starter import start_job
from common.models import RELEASE_WAIT_SIGNAL, ReleaseSeen
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import attempt_gaps, events, herald_client, job_state, patch_ids, running_workers, sms_job
from workflows.patches import RELEASABLE_BACKOFFS

# exponential from 60 s: 60 s → 120 s → 240 s between attempts 1-2, 2-3, 3-4.
BACKOFF_MS = 60_000
# A released backoff ends within seconds, even on a loaded machine (the shortest one here is 120 s).
PROMPT_S = 20


async def _until_in_backoff(env: WorkflowEnvironment, handle: WorkflowHandle, done: int) -> dict:
    """The job's state (as the API reads it) once it waits out the backoff after attempt `done`; time
    stands still meanwhile, so the backoff does not pass by itself."""
    with env.auto_time_skipping_disabled():
        for _ in range(400):
            state = await job_state(herald_client(env), handle)
            if state["phase"] == "delayed" and state["attempts"] == done:
                return state
            await asyncio.sleep(0.05)
    raise AssertionError(f"never in the backoff after attempt {done}: {state}")


async def _released(env: WorkflowEnvironment, handle: WorkflowHandle) -> None:
    """What POST /jobs/{id}/release does: the job must read as waiting; then the signal."""
    view = await load_job(herald_client(env), handle.id, None)
    assert not_waiting_reason(view) is None, view
    with env.auto_time_skipping_disabled():
        await handle.signal(RELEASE_WAIT_SIGNAL, ReleaseSeen(attempts=view.state["attempts"]))


def _seconds(event) -> float:
    return event.event_time.ToDatetime().timestamp()


async def _backoffs(handle: WorkflowHandle) -> list[tuple[float, float, str]]:
    """Each backoff timer: (its length, seconds from its start to the next attempt's scheduling, how it
    ended: fired or canceled), from history."""
    history = [e async for e in handle.fetch_history_events()]
    out = []
    for n, event in enumerate(history):
        if event.event_type != EventType.EVENT_TYPE_TIMER_STARTED:
            continue
        length = event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
        timer_id = event.timer_started_event_attributes.timer_id
        ended = next(
            e
            for e in history[n:]
            if e.event_type in (EventType.EVENT_TYPE_TIMER_FIRED, EventType.EVENT_TYPE_TIMER_CANCELED)
            and (e.timer_fired_event_attributes.timer_id or e.timer_canceled_event_attributes.timer_id) == timer_id
        )
        scheduled = next(e for e in history[n:] if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
        how = "fired" if ended.event_type == EventType.EVENT_TYPE_TIMER_FIRED else "canceled"
        out.append((length, _seconds(scheduled) - _seconds(event), how))
    return out


async def test_a_release_in_the_second_and_the_third_backoff_starts_the_next_attempt_now(time_env, make_settings):
    script = [Answer(503), Answer(500), Answer(503), Answer(200, {"id": "sms_4"})]
    client = herald_client(time_env)
    with HttpReceiver(script) as gateway:
        async with running_workers(client, make_settings(sms_gateway_url=gateway.url)):
            spec = sms_job(attempts=4, backoff="exponential", backoff_ms=BACKOFF_MS)
            handle = (await start_job(client, spec)).handle
            # The first backoff (60 s) passes by itself: time skips through it.
            await _until_in_backoff(time_env, handle, 1)
            await time_env.sleep(timedelta(seconds=61))

            # The second backoff: `delayed`, attempt 2 done, the next at its end; released.
            waiting = await _until_in_backoff(time_env, handle, 2)
            now = await time_env.get_current_time()
            next_at = datetime.fromisoformat(waiting["next_attempt_at"])
            assert timedelta(seconds=100) < next_at - now <= timedelta(seconds=120), (next_at, now)
            assert [d["attempt"] for d in waiting["deliveries"]] == [1, 2] and "HTTP 500" in waiting["error"]
            await _released(time_env, handle)

            # The third backoff (240 s): released too.
            waiting = await _until_in_backoff(time_env, handle, 3)
            assert datetime.fromisoformat(waiting["next_attempt_at"]) - await time_env.get_current_time() > timedelta(
                seconds=200
            )
            await _released(time_env, handle)
            with time_env.auto_time_skipping_disabled():
                final = await asyncio.wait_for(handle.result(), PROMPT_S)

    assert final.phase == "completed" and final.attempts == 4 and final.result["provider_id"] == "sms_4"
    assert [(d.attempt, d.succeeded) for d in final.deliveries] == [(1, False), (2, False), (3, False), (4, True)]
    assert [(d.rule, d.outcome) for d in final.decisions] == [("release", "released"), ("release", "released")]
    assert len(gateway.received) == 4 and {r.headers["idempotency-key"] for r in gateway.received} == {handle.id}
    # From history: attempt 1 a local activity, attempts 2-4 an activity each, each started once.
    started = await events(handle, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    assert [e.activity_task_started_event_attributes.attempt for e in started] == [1, 1, 1]
    # The backoffs: 60 s waited out; 120 s and 240 s cut short by the releases, the next attempt at once.
    [first, second, third] = await _backoffs(handle)
    assert first[0] == 60 and first[2] == "fired" and 60 <= first[1] < 60 + PROMPT_S, first
    assert second[0] == 120 and second[2] == "canceled" and second[1] < PROMPT_S, second
    assert third[0] == 240 and third[2] == "canceled" and third[1] < PROMPT_S, third
    assert RELEASABLE_BACKOFFS in await patch_ids(handle)


async def test_a_release_in_the_last_backoff_runs_the_last_attempt_and_then_the_job_is_a_dead_letter(
    time_env, make_settings
):
    with HttpReceiver([Answer(503)]) as gateway:
        async with running_workers(herald_client(time_env), make_settings(sms_gateway_url=gateway.url)):
            handle = (await start_job(herald_client(time_env), sms_job(attempts=3, backoff_ms=BACKOFF_MS))).handle
            await _until_in_backoff(time_env, handle, 1)
            await time_env.sleep(timedelta(seconds=61))
            await _until_in_backoff(time_env, handle, 2)
            await _released(time_env, handle)
            with time_env.auto_time_skipping_disabled(), pytest.raises(WorkflowFailureError):
                await asyncio.wait_for(handle.result(), PROMPT_S)
    state = await job_state(herald_client(time_env), handle)
    assert state["phase"] == "failed" and state["attempts"] == 3 and "HTTP 503" in state["error"]
    assert [d["attempt"] for d in state["deliveries"]] == [1, 2, 3]
    assert [(d["rule"], d["outcome"]) for d in state["decisions"]] == [("release", "released")]
    assert len(gateway.received) == 3
    [_, second] = await _backoffs(handle)
    assert second[0] == 120 and second[2] == "canceled" and second[1] < PROMPT_S, second


async def test_every_later_backoff_keeps_its_length_and_a_retry_after(time_env, make_settings):
    """Not released: attempts 2-4 each wait their backoff (2 s, 4 s), and a Retry-After of attempt 3 sets
    the wait after it (30 s), as the retry policy did when the server held the backoffs."""
    script = [Answer(503), Answer(500), Answer(429, headers={"Retry-After": "30"}), Answer(200, {"id": "ok"})]
    with HttpReceiver(script) as gateway:
        async with running_workers(herald_client(time_env), make_settings(sms_gateway_url=gateway.url)):
            handle = (await start_job(herald_client(time_env), sms_job(attempts=4))).handle
            await handle.result()
    state = await job_state(herald_client(time_env), handle)
    assert state["phase"] == "completed" and state["attempts"] == 4
    gaps = await attempt_gaps(handle, state)
    assert [round(g) for g in gaps] == [2, 4, 30], gaps
    assert [b[0] for b in await _backoffs(handle)] == [2, 4, 30]


async def test_a_release_that_reaches_the_job_after_its_wait_ended_is_dropped(time_env, make_settings):
    """The race POST /jobs/{id}/release can meet: it read the job waiting out its delay (no attempt yet)
    just before the delay ended, and its signal arrives while attempt 1 is at the gateway. By the time the
    run sees it, attempt 1 has failed and the first backoff has begun: not the wait the release was for,
    so the backoff is waited out in full and no release is recorded."""
    held = threading.Event()
    script = [Answer(503, hold=held), Answer(200, {"id": "sms_2"})]
    client = herald_client(time_env)
    with HttpReceiver(script) as gateway:
        async with running_workers(client, make_settings(sms_gateway_url=gateway.url)):
            spec = sms_job(attempts=2, backoff="fixed", backoff_ms=BACKOFF_MS, delay_ms=30_000)
            handle = (await start_job(client, spec)).handle
            await time_env.sleep(timedelta(seconds=31))  # the delay passes; attempt 1 goes out and is held
            with time_env.auto_time_skipping_disabled():
                await gateway.until_received(1, timeout_s=20)
                await handle.signal(RELEASE_WAIT_SIGNAL, ReleaseSeen(attempts=0))
                held.set()
            final = await handle.result()

    assert final.phase == "completed" and final.attempts == 2 and final.result["provider_id"] == "sms_2"
    assert not final.decisions, "the late release ended no wait"
    # Timers from history: the delay (30 s), then the first backoff (60 s) waited out to its end.
    [delay, backoff] = await _backoffs(handle)
    assert delay[0] == 30 and delay[2] == "fired", delay
    assert backoff[0] == 60 and backoff[2] == "fired" and backoff[1] >= 60, backoff
