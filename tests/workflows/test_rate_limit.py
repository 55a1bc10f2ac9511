"""Jobs and batches on a worker whose channel has a rate limit (activities/rate_limit.py), in the
time-skipping environment with a real SMTP sink and real HTTP receivers: the first attempt, declined
as a local activity, goes out as an activity through the task queue (where the limit counts it), not
counted as an attempt; a batch sends one item per activity once a slice was declined."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from api.batches.service import new_batch_id, start_batch
from api.jobs.starter import start_job
from common.jobs import webhook_job
from common.models import BatchInput, BatchWebhook
from common.names import FIRST_ATTEMPT_DECLINED
from devstack.smtp_sink import read_outbox
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import (
    email_job,
    events,
    herald_client,
    job_spec,
    job_state,
    local_activity_markers,
    patch_ids,
    running_workers,
)
from workflows.patches import RATE_LIMITED_BATCH_SLICES, RATE_LIMITED_FIRST_ATTEMPT

CHUNK_ITEMS = 1000


async def scheduled_activities(handle) -> list:
    return [
        e.activity_task_scheduled_event_attributes
        for e in await events(handle, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    ]


async def test_a_declined_first_attempt_is_sent_as_an_activity_and_not_counted(time_env, make_settings, smtp_sink):
    client = herald_client(time_env)
    async with running_workers(client, make_settings(email_rate_limit=5)):
        # As the API starts every job now: the first attempt meant to run locally.
        request = email_job()
        assert request.job.first_attempt_local
        handle = (await start_job(client, request)).handle
        final = await handle.result()
        state = await job_state(client, handle)

    [mail] = read_outbox(smtp_sink.outbox)
    assert mail["Message-ID"] == f"<{handle.id}@herald>" == final.result["provider_id"]
    # One attempt, sent by the activity: the declined try is not one.
    assert state["phase"] == "completed" and state["attempts"] == 1
    assert [(d["attempt"], d["succeeded"]) for d in state["deliveries"]] == [(1, True)]
    assert state["deliveries"][0]["server_started_at"], "attempt 1 ran as an activity, through the queue"
    # In history: the declined local try, the patch's marker, then one activity for attempts 1-3.
    [declined] = await local_activity_markers(handle)
    assert declined.marker_recorded_event_attributes.failure.application_failure_info.type == FIRST_ATTEMPT_DECLINED
    assert RATE_LIMITED_FIRST_ATTEMPT in await patch_ids(handle)
    [scheduled] = await scheduled_activities(handle)
    assert scheduled.activity_type.name == "send_email" and scheduled.task_queue.name == "herald-email"
    # No deadline of its own from its scheduling (the server fills in the run's: none, years): a send
    # waiting its turn behind a backlog is never dropped.
    assert scheduled.schedule_to_close_timeout.ToTimedelta() > timedelta(days=365)
    assert scheduled.start_to_close_timeout.ToTimedelta() == timedelta(seconds=request.job.attempt_timeout_s)
    # What docs/delivery.md says a rate-limited job costs: 15 events (7 on an unlimited channel).
    assert len([e async for e in handle.fetch_history_events()]) == 15


async def test_retries_after_a_declined_first_attempt_count_from_one(time_env, make_settings):
    client = herald_client(time_env)
    with HttpReceiver([Answer(500), Answer(503), Answer(200)]) as receiver:
        async with running_workers(client, make_settings(webhook_rate_limit=5)):
            spec = job_spec("webhook", family="notify", attempts=3, backoff_ms=1000)
            handle = (await start_job(client, webhook_job(spec, receiver.url, {"n": 1}))).handle
            await handle.result()
            state = await job_state(client, handle)
    assert len(receiver.received) == 3
    assert {r.headers["webhook-id"] for r in receiver.received} == {handle.id}
    assert state["phase"] == "completed" and state["attempts"] == 3
    assert [(d["attempt"], d["succeeded"]) for d in state["deliveries"]] == [(1, False), (2, False), (3, True)]
    # Each attempt an activity of its own through the queue (the workflow waits out each backoff on a
    # timer a release can end); Temporal would retry only an attempt lost with its worker, under what is left.
    scheduled = await scheduled_activities(handle)
    assert [s.retry_policy.maximum_attempts for s in scheduled] == [3, 2, 1]
    started = await events(handle, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    assert [e.activity_task_started_event_attributes.attempt for e in started] == [1, 1, 1]
    timers = await events(handle, EventType.EVENT_TYPE_TIMER_STARTED)
    waits = [t.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds() for t in timers]
    assert waits == [1, 2]


async def test_a_job_on_an_unlimited_channel_still_sends_its_first_attempt_locally(time_env, make_settings, smtp_sink):
    client = herald_client(time_env)
    async with running_workers(client, make_settings(webhook_rate_limit=5)):  # another channel's limit
        handle = (await start_job(client, email_job())).handle
        await handle.result()
    [sent] = await local_activity_markers(handle)
    assert not sent.marker_recorded_event_attributes.HasField("failure")
    assert await scheduled_activities(handle) == []
    assert len(read_outbox(smtp_sink.outbox)) == 1


async def test_a_batch_sends_one_item_per_activity_after_a_declined_slice(time_env, make_settings):
    client = herald_client(time_env)
    spec = replace(job_spec("webhook", family="notify", attempts=3, backoff_ms=1000), job_id=new_batch_id())
    with HttpReceiver([Answer(200)]) as ok, HttpReceiver([Answer(500), Answer(200)]) as flaky:
        urls = [ok.url] * 5 + [flaky.url]
        batch = BatchInput(
            job=spec,
            webhooks=[BatchWebhook(url=u, data={"n": n}) for n, u in enumerate(urls)],
            slice_items=3,
            slices_in_flight=2,
        )
        async with running_workers(client, make_settings(webhook_rate_limit=5)):
            handle = await start_batch(client, batch, None, CHUNK_ITEMS)
            result = await handle.result()
    ids = [f"{spec.job_id}-{n}" for n in range(len(urls))]
    assert [i.phase.value for i in result.items] == ["completed"] * 6
    # The declined slices cost no attempt: five items sent once, the flaky one retried once.
    assert [i.attempts for i in result.items] == [1, 1, 1, 1, 1, 2]
    assert sorted(r.headers["webhook-id"] for r in ok.received) == sorted(ids[:5])
    assert [r.headers["webhook-id"] for r in flaky.received] == [ids[5], ids[5]]
    # The first two slices (3 items each) were declined; then every activity carried one item.
    inputs = [(await client.data_converter.decode(a.input.payloads))[0] for a in await scheduled_activities(handle)]
    sizes = [len(part["numbers"]) for part in inputs]
    assert sizes == [3, 3] + [1] * 7, sizes
    assert RATE_LIMITED_BATCH_SLICES in await patch_ids(handle)
