"""An SMS the API did not count at intake (a schedule's run, a redrive) takes its quota slot when it is
about to be sent, and waits while the hour is full (workflows/notification.py, `sms-quota-at-send`):
`delayed` until the moment a slot frees, then it asks again and is sent. The hour passes on the
time-skipping server.

That server has no update-with-start: here the quota is reached in two calls (start, then update), as
tests/workflows/test_sms_quota.py does; the quota workflow, the activity and the job's run are
today's code. tests/api/test_throttle_exact.py covers the real update-with-start end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError

import activities.sms_quota
from api.jobs.starter import sms_job, start_job
from common.models import INTAKE_TASK_QUEUE, JobState, QuotaAnswer, QuotaInput, QuotaRequest
from common.sms_quota import quota_key
from tests.support.http_receiver import HttpReceiver
from tests.support.temporal import herald_client, job_spec, job_state, patch_ids, query_settled, running_workers
from workflows.patches import SMS_QUOTA_AT_SEND
from workflows.sms_quota import SmsQuotaWorkflow

LIMIT = 10
HOUR = timedelta(hours=1)
# The job asks for its slot this long after the hour filled, not at once. A quota workflow cancels its
# idle timer whenever a reservation touches it, and that timer is due an hour after the job's refused ask:
# asked at once, it would fall due within milliseconds of the moment the slot frees, when the job asks
# again. If it fires while the workflow task taking that ask is with the worker, the time-skipping server
# refuses the task's completion for cancelling a fired timer ("invalid history builder state for action")
# and never times the task out or sends it again (temporalio/sdk-java#2606, #3088): the quota never
# answers, the job asks for ever, and its result never comes. A real server takes that cancel.
ASKED_AFTER = timedelta(minutes=10)
# A job with a slot ends within seconds, even on a loaded machine; well inside pytest's 300 s timeout.
RESULT_WAIT_S = 60


async def _reserve_in_two_calls(client: Client, key: str, request: QuotaRequest) -> QuotaAnswer:
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(SmsQuotaWorkflow.run, QuotaInput(key=key), id=key, task_queue=INTAKE_TASK_QUEUE)
    return await client.get_workflow_handle(key).execute_update(
        SmsQuotaWorkflow.reserve, request, id=f"reserve-{request.token}"
    )


@pytest.fixture(autouse=True)
def quota_without_update_with_start(monkeypatch):
    monkeypatch.setattr(activities.sms_quota, "reserve_on", _reserve_in_two_calls)


async def _fill(client: Client, kind: str, value: str) -> None:
    # All at one instant: they all free at the same moment too.
    answer = await _reserve_in_two_calls(
        client, quota_key(kind, value), QuotaRequest(count=LIMIT, limit=LIMIT, token=uuid.uuid4().hex)
    )
    assert answer.granted


async def _used(client: Client, kind: str, value: str) -> int:
    return await query_settled(client.get_workflow_handle(quota_key(kind, value)), SmsQuotaWorkflow.used)


def _phone() -> str:
    return f"+1415555{uuid.uuid4().int % 10_000:04d}"


async def _delayed(env, handle: WorkflowHandle) -> dict:
    """The job's state once its run waits for a slot (time stands still meanwhile)."""
    client = herald_client(env)
    with env.auto_time_skipping_disabled():
        for _ in range(100):
            state = await job_state(client, handle)
            if state["phase"] == "delayed":
                return state
            assert state["phase"] in ("queued", "processing"), state
            await env.sleep(0.1)
    raise AssertionError(f"never delayed: {state}")


async def _after(env, frees: datetime, handle: WorkflowHandle) -> JobState:
    """The job's end, once time has passed the moment its slot frees (and no further: a slot taken then
    is still counted)."""
    with env.auto_time_skipping_disabled():
        await env.sleep(frees - await env.get_current_time() + timedelta(seconds=2))
        return await _result(env, handle)


async def _result(env, handle: WorkflowHandle) -> JobState:
    """The job's end, or a failure that says where it stands (auto time skipping being off, a job that
    waits on a timer again, or a quota that never answers, would otherwise hold the test for ever)."""
    try:
        return await asyncio.wait_for(handle.result(), RESULT_WAIT_S)
    except TimeoutError:
        state = await job_state(herald_client(env), handle)
        raise AssertionError(
            f"job {handle.id} has not ended {RESULT_WAIT_S} s on: phase {state['phase']},"
            f" next attempt at {state['next_attempt_at']}, {state['attempts']} attempts"
        ) from None


async def test_an_uncounted_sms_waits_until_a_slot_frees_then_takes_it_and_is_sent(time_env, make_settings):
    phone = _phone()
    client = herald_client(time_env)
    with HttpReceiver() as gateway:
        async with running_workers(client, make_settings(sms_gateway_url=gateway.url, sms_per_hour=LIMIT)):
            await _fill(client, "phone", phone)
            filled_at = await time_env.get_current_time()
            await time_env.sleep(ASKED_AFTER)
            # As a schedule's run or a redrive starts it: not counted at intake.
            request = sms_job(job_spec("sms", recipient=phone), phone, "hello")
            assert not request.sms_slot_taken
            handle = (await start_job(client, request)).handle

            waiting = await _delayed(time_env, handle)
            frees = datetime.fromisoformat(waiting["next_attempt_at"])
            # When the hour's first slot frees, not an hour after the job asked.
            assert abs((frees - (filled_at + HOUR)).total_seconds()) < 5, (frees, filled_at)
            assert gateway.received == []

            state = await _after(time_env, frees, handle)
            assert state.phase == "completed" and state.attempts == 1
            assert len(gateway.received) == 1
            assert gateway.received[0].json()["to"] == phone
            # Sent once the first slots expired: it took one of the new hour's.
            assert await _used(client, "phone", phone) == 1
    assert SMS_QUOTA_AT_SEND in await patch_ids(handle)


async def test_an_sms_counted_at_intake_is_sent_at_once_however_full_the_hour(time_env, make_settings):
    phone = _phone()
    client = herald_client(time_env)
    with HttpReceiver() as gateway:
        async with running_workers(client, make_settings(sms_gateway_url=gateway.url, sms_per_hour=LIMIT)):
            await _fill(client, "phone", phone)
            request = replace(sms_job(job_spec("sms", recipient=phone), phone, "hello"), sms_slot_taken=True)
            handle = (await start_job(client, request)).handle
            with time_env.auto_time_skipping_disabled():
                state = await _result(time_env, handle)
            assert state.phase == "completed" and len(gateway.received) == 1
            assert await _used(client, "phone", phone) == LIMIT  # no slot taken twice
    assert SMS_QUOTA_AT_SEND not in await patch_ids(handle)


async def test_a_full_user_quota_holds_the_sms_and_none_of_its_numbers_slots(time_env, make_settings):
    phone, user_id = _phone(), f"user-{uuid.uuid4().hex[:8]}"
    client = herald_client(time_env)
    with HttpReceiver() as gateway:
        async with running_workers(client, make_settings(sms_gateway_url=gateway.url, sms_per_hour=LIMIT)):
            await _fill(client, "user", user_id)
            await time_env.sleep(ASKED_AFTER)
            request = sms_job(job_spec("sms", recipient=phone), phone, "hello", user_id)
            handle = (await start_job(client, request)).handle
            waiting = await _delayed(time_env, handle)
            # The number's slot was given back while the user's hour is full.
            assert await _used(client, "phone", phone) == 0
            state = await _after(time_env, datetime.fromisoformat(waiting["next_attempt_at"]), handle)
            assert state.phase == "completed" and len(gateway.received) == 1
            assert await _used(client, "phone", phone) == 1
            assert await _used(client, "user", user_id) == 1
