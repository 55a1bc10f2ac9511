"""Result callbacks: a job's final state POSTed, signed, to its webhookUrl by a child workflow."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from standardwebhooks import Webhook
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError

from api.jobs.starter import email_job, sms_job, start_job
from devstack.smtp_sink import read_outbox
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import WEBHOOK_SECRET, events, herald_client, job_spec, job_state, running_workers


async def run_to_end(env, settings, request):
    async with running_workers(herald_client(env), settings):
        handle = (await start_job(herald_client(env), request)).handle
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()
    return handle, await job_state(herald_client(env), handle)


@pytest.mark.parametrize(("family", "word"), [("jobs", "completed"), ("notify", "success")])
async def test_a_completed_job_calls_back_signed_in_its_familys_words(time_env, make_settings, smtp_sink, family, word):
    with HttpReceiver() as receiver:
        spec = job_spec("email", family=family, callback_url=receiver.url + "/done")
        handle, state = await run_to_end(time_env, make_settings(), email_job(spec, "ada@example.com", "Hi", "Body"))
    assert len(read_outbox(smtp_sink.outbox)) == 1
    [callback] = receiver.received
    body = Webhook(WEBHOOK_SECRET).verify(callback.body, callback.headers)
    assert callback.path == "/done"
    assert callback.headers["webhook-id"] == f"{handle.id}-callback"
    assert body["type"] == "job.completed" and body["timestamp"]
    assert body["data"] == {"jobId": handle.id, "status": word, "attempts": 1}
    assert state["callback"] == {"url": receiver.url + "/done", "status": "delivered", "attempts": 1, "error": None}


async def test_a_failed_job_calls_back_with_its_error(time_env, make_settings):
    with HttpReceiver([Answer(400, {"error": "bad number"})]) as gateway, HttpReceiver() as receiver:
        spec = job_spec("sms", callback_url=receiver.url)
        handle, state = await run_to_end(
            time_env,
            make_settings(sms_gateway_url=gateway.url),
            replace(sms_job(spec, "+14155550100", "hello"), sms_slot_taken=True),
        )
    [callback] = receiver.received
    body = Webhook(WEBHOOK_SECRET).verify(callback.body, callback.headers)
    assert body["type"] == "job.failed"
    assert body["data"] == {
        "jobId": handle.id,
        "status": "failed",
        "attempts": 1,
        "error": "SMS gateway answered HTTP 400",
    }
    assert state["phase"] == "failed" and state["callback"]["status"] == "delivered"


async def test_a_callback_is_retried_and_its_failure_does_not_change_the_job(time_env, make_settings, smtp_sink):
    with HttpReceiver([Answer(503), Answer(410, {"gone": True})]) as receiver:
        spec = job_spec("email", callback_url=receiver.url)
        _, state = await run_to_end(time_env, make_settings(), email_job(spec, "ada@example.com", "Hi", "Body"))
    assert len(receiver.received) == 2
    assert {r.headers["webhook-id"] for r in receiver.received} == {f"{spec.job_id}-callback"}
    assert state["phase"] == "completed"
    assert state["callback"]["status"] == "failed" and state["callback"]["attempts"] == 2
    assert "HTTP 410" in state["callback"]["error"]


async def test_a_receiver_down_for_an_hour_still_gets_its_callback(time_env, make_settings, smtp_sink):
    with HttpReceiver([Answer(503)] * 10 + [Answer(200)]) as receiver:
        spec = job_spec("email", callback_url=receiver.url)
        handle, state = await run_to_end(time_env, make_settings(), email_job(spec, "ada@example.com", "Hi", "Body"))
    assert len(receiver.received) == 11
    assert state["callback"]["status"] == "delivered" and state["callback"]["attempts"] == 11
    callback_run = herald_client(time_env).get_workflow_handle(f"{handle.id}-callback")
    # Only the last of a retried activity's attempts is in history: its start, an hour and more
    # after the first attempt was scheduled.
    [scheduled] = await events(callback_run, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    [started] = await events(callback_run, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    assert started.activity_task_started_event_attributes.attempt == 11
    assert (started.event_time.ToDatetime() - scheduled.event_time.ToDatetime()).total_seconds() >= 3600
