"""NotificationWorkflow in the time-skipping environment, with real SMTP and real HTTP at the edges."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError

from api.jobs.starter import start_job
from common.models import NotificationInput
from devstack.smtp_sink import read_outbox
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import (
    attempt_gaps,
    email_job,
    events,
    herald_client,
    job_state,
    local_activity_markers,
    patch_ids,
    running_workers,
    sms_job,
)
from workflows.patches import LEAN_LIFECYCLE


async def start(env, request: NotificationInput):
    # The API's own start path: initial memo, search attributes, task queue.
    # (Its handle, not a fresh one: only that one lets time skip while awaiting the result.)
    return (await start_job(herald_client(env), request)).handle


@pytest.mark.parametrize("delay", [timedelta(seconds=60), timedelta(hours=24)], ids=["60s", "24h"])
async def test_delay_is_a_durable_timer_that_never_fires_early(time_env, make_settings, smtp_sink, delay):
    wall_start = time.monotonic()
    async with running_workers(herald_client(time_env), make_settings()):
        handle = await start(time_env, email_job(delay_ms=int(delay.total_seconds() * 1000)))
        state = await job_state(herald_client(time_env), handle)
        assert state["phase"] == "delayed" and state["not_before"]

        await time_env.sleep(delay - timedelta(seconds=1))
        assert read_outbox(smtp_sink.outbox) == []
        assert (await job_state(herald_client(time_env), handle))["phase"] == "delayed"

        final = await handle.result()

    [mail] = read_outbox(smtp_sink.outbox)
    assert mail["Subject"] == "Hello" and mail.get_content().strip() == "Body text"
    assert mail["Message-ID"] == f"<{handle.id}@herald>" == final.result["provider_id"]
    [started] = await events(handle, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
    # The send is the first attempt, a local activity: its marker is written when it has run.
    [sent] = await local_activity_markers(handle)
    waited = sent.event_time.ToDatetime() - started.event_time.ToDatetime()
    assert delay <= waited < delay + timedelta(seconds=5)
    assert (await job_state(herald_client(time_env), handle))["phase"] == "completed"
    # Waiting for real would take the 60 s at least (or the day); well below that, whatever the load.
    assert time.monotonic() - wall_start < 45, "time-skipping must not wait for real"


async def test_deliver_at_waits_until_that_instant(time_env, make_settings, smtp_sink):
    due = await time_env.get_current_time() + timedelta(hours=3)
    async with running_workers(herald_client(time_env), make_settings()):
        handle = await start(time_env, email_job(deliver_at=due.isoformat()))
        assert (await job_state(herald_client(time_env), handle))["not_before"] == due.isoformat()
        await handle.result()
    [sent] = await local_activity_markers(handle)
    assert sent.event_time.ToDatetime().timestamp() >= due.timestamp()


async def test_failing_send_retries_2s_then_4s_and_fails_after_3_attempts(time_env, make_settings):
    with HttpReceiver([Answer(500, {"error": "gateway down"})]) as gateway:
        async with running_workers(herald_client(time_env), make_settings(sms_gateway_url=gateway.url)):
            handle = await start(time_env, sms_job())
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()

    assert "SMS gateway answered HTTP 500" in str(failure.value.cause)
    assert len(gateway.received) == 3
    # One idempotency key for every attempt, so the gateway can drop duplicates.
    assert {r.headers["idempotency-key"] for r in gateway.received} == {handle.id}
    state = await job_state(herald_client(time_env), handle)
    gaps = await attempt_gaps(handle, state)
    assert [round(g) for g in gaps] == [2, 4], gaps
    assert state["phase"] == "failed" and state["attempts"] == 3 and state["max_attempts"] == 3
    assert state["error"] == "SMS gateway answered HTTP 500"
    assert [d["status_code"] for d in state["deliveries"]] == [500, 500, 500]


async def test_a_send_that_succeeds_on_the_third_attempt_completes(time_env, make_settings):
    script = [Answer(503, {"e": 1}), Answer(500, {"e": 2}), Answer(200, {"id": "sms_42"})]
    with HttpReceiver(script) as gateway:
        async with running_workers(herald_client(time_env), make_settings(sms_gateway_url=gateway.url)):
            handle = await start(time_env, sms_job())
            final = await handle.result()
    assert final.result["provider_id"] == "sms_42"
    state = await job_state(herald_client(time_env), handle)
    assert state["phase"] == "completed" and state["attempts"] == 3
    assert [d["succeeded"] for d in state["deliveries"]] == [False, False, True]
    body = gateway.received[-1].json()
    assert body == {"to": "+14155550100", "body": "Your code is 123456", "idempotencyKey": handle.id}


@pytest.mark.parametrize("status", [400, 401, 422])
async def test_a_permanent_gateway_error_fails_after_one_attempt(time_env, make_settings, status):
    with HttpReceiver([Answer(status, {"error": "bad number"})]) as gateway:
        async with running_workers(herald_client(time_env), make_settings(sms_gateway_url=gateway.url)):
            handle = await start(time_env, sms_job())
            with pytest.raises(WorkflowFailureError):
                await handle.result()
    assert len(gateway.received) == 1
    state = await job_state(herald_client(time_env), handle)
    assert state["phase"] == "failed" and state["attempts"] == 1
    assert state["error"] == f"SMS gateway answered HTTP {status}"


async def test_a_refused_mailbox_fails_after_one_attempt(time_env, make_settings, smtp_sink):
    async with running_workers(herald_client(time_env), make_settings()):
        handle = await start(time_env, email_job(to="nobody@reject.test"))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    state = await job_state(herald_client(time_env), handle)
    assert state["attempts"] == 1 and "550" in state["error"]
    assert read_outbox(smtp_sink.outbox) == []


async def test_a_temporary_smtp_refusal_is_retried(time_env, make_settings, smtp_sink):
    async with running_workers(herald_client(time_env), make_settings()):
        handle = await start(time_env, email_job(to="busy@tempfail.test", attempts=2, backoff_ms=1000))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    state = await job_state(herald_client(time_env), handle)
    assert state["attempts"] == 2 and "451" in state["error"]


@pytest.mark.parametrize(
    ("attempts", "backoff", "delay_ms", "expected_gaps"),
    [(4, "fixed", 1000, [1, 1, 1]), (3, "exponential", 5000, [5, 10]), (1, "exponential", 2000, [])],
)
async def test_a_job_can_set_its_own_attempts_and_backoff(
    time_env, make_settings, attempts, backoff, delay_ms, expected_gaps
):
    with HttpReceiver([Answer(503)]) as gateway:
        async with running_workers(herald_client(time_env), make_settings(sms_gateway_url=gateway.url)):
            handle = await start(time_env, sms_job(attempts=attempts, backoff=backoff, backoff_ms=delay_ms))
            with pytest.raises(WorkflowFailureError):
                await handle.result()
    assert len(gateway.received) == attempts
    state = await job_state(herald_client(time_env), handle)
    gaps = await attempt_gaps(handle, state)
    assert [round(g) for g in gaps] == expected_gaps, gaps
    assert state["attempts"] == attempts


async def test_retry_after_sets_the_next_attempt(time_env, make_settings):
    script = [Answer(429, headers={"Retry-After": "30"}), Answer(200, {"id": "ok"})]
    with HttpReceiver(script) as gateway:
        async with running_workers(herald_client(time_env), make_settings(sms_gateway_url=gateway.url)):
            handle = await start(time_env, sms_job())
            await handle.result()
    [gap] = await attempt_gaps(handle, await job_state(herald_client(time_env), handle))
    assert 30 <= gap < 32, gap


async def test_cancelling_a_delayed_job_sends_nothing(time_env, make_settings, smtp_sink):
    async with running_workers(herald_client(time_env), make_settings()):
        handle = await start(time_env, email_job(delay_ms=3_600_000))
        await time_env.sleep(timedelta(minutes=1))
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        await time_env.sleep(timedelta(hours=2))
    assert (await job_state(herald_client(time_env), handle))["phase"] == "cancelled"
    assert read_outbox(smtp_sink.outbox) == []


async def test_a_cancel_during_a_send_waits_for_it_and_reports_the_truth(time_env, make_settings):
    with HttpReceiver([Answer(200, {"id": "sms_1"}, delay_s=1.5)]) as gateway:
        async with running_workers(herald_client(time_env), make_settings(sms_gateway_url=gateway.url)):
            handle = await start(time_env, sms_job())
            while not gateway.received:  # noqa: ASYNC110 - the gateway fills it from its own thread
                await asyncio.sleep(0.05)
            await handle.cancel()  # the gateway has the message and is about to answer 200
            # The first attempt runs inside a workflow task (a local activity); the test server
            # would skip past that task's timeout while it runs, which a real server never does.
            with time_env.auto_time_skipping_disabled():
                await handle.result()
    # The cancel reaches the server while the first attempt (a local activity) runs inside a
    # workflow task, so the server refuses that task's completion and the attempt runs again:
    # at least once, always with the job's one idempotency key, so the gateway can drop it.
    assert 1 <= len(gateway.received) <= 2
    assert {r.headers["idempotency-key"] for r in gateway.received} == {handle.id}
    state = await job_state(herald_client(time_env), handle)
    assert state["phase"] == "completed" and state["attempts"] == 1


async def test_a_job_sent_at_once_is_seven_history_events(time_env, make_settings, smtp_sink):
    # The API's spec names its lifecycle, so the run asks no patch: no marker, no TemporalChangeVersion upsert.
    async with running_workers(herald_client(time_env), make_settings()):
        handle = await start(time_env, email_job())
        assert (await handle.result()).phase == "completed"
    kinds = [e.event_type async for e in handle.fetch_history_events()]
    assert kinds == [
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        EventType.EVENT_TYPE_MARKER_RECORDED,  # the first attempt, a local activity
        EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,  # HeraldStatus: completed
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    ]
    assert await patch_ids(handle) == set()
    assert len(read_outbox(smtp_sink.outbox)) == 1


async def test_a_spec_from_before_its_lifecycle_field_runs_the_lean_lifecycle_by_its_patch(
    time_env, make_settings, smtp_sink
):
    # A schedule's or a `then`'s spec stored before the field: the run asks the patch, which a new run passes.
    async with running_workers(herald_client(time_env), make_settings()):
        handle = await start(time_env, email_job(lifecycle=0))
        final = await handle.result()
    assert final.phase == "completed" and final.attempts == 1
    assert await patch_ids(handle) == {LEAN_LIFECYCLE}
    assert len(await local_activity_markers(handle)) == 1
    assert await events(handle, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == []
