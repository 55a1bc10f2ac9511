"""BatchWorkflow (workflows/batch.py) in the time-skipping environment against real HTTP receivers:
each item retries on its own schedule (the job's backoff, or the Retry-After it was given), fails
alone into a dead letter of its own, and the batch's history stays small."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from temporalio.api.enums.v1 import EventType

from api.batches.service import chunks, new_batch_id, start_batch
from api.jobs.service import load_job
from common.models import TASK_QUEUES, BatchInput, BatchWebhook, ChunkedBatchInput, batch_chunk_id
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import events, herald_client, job_spec, running_workers
from workflows.batch import CHUNK_HOLD, BatchWorkflow
from workflows.batch_chunks import ChunkedBatchWorkflow

# Every batch here fits in one run (a chunked one: tests/api/test_batch_chunks.py).
CHUNK_ITEMS = 1000


async def test_each_item_retries_on_its_own_backoff_and_fails_alone(time_env, make_settings):
    client = herald_client(time_env)
    spec = replace(job_spec("webhook", family="notify", attempts=3, backoff_ms=10_000), job_id=new_batch_id())
    with (
        HttpReceiver([Answer(200)]) as ok,
        HttpReceiver([Answer(500), Answer(503), Answer(200)]) as flaky,
        HttpReceiver([Answer(429, headers={"Retry-After": "120"}), Answer(200)]) as busy,
        HttpReceiver([Answer(500)]) as broken,
        HttpReceiver([Answer(404)]) as gone,
    ):
        urls = [ok.url, flaky.url, busy.url, broken.url, gone.url]
        batch = BatchInput(
            job=spec,
            webhooks=[BatchWebhook(url=u, data={"n": n}) for n, u in enumerate(urls)],
            slice_items=2,
            slices_in_flight=2,
        )
        async with running_workers(client, make_settings()):
            # The handle start_workflow gave: its result() lets the test server skip time.
            handle = await start_batch(client, batch, None, CHUNK_ITEMS)
            result = await handle.result()
            ids = [f"{spec.job_id}-{n}" for n in range(len(urls))]
            views = [await load_job(client, job_id, None) for job_id in ids]
    items = result.items
    assert [i.phase.value for i in items] == ["completed", "completed", "completed", "failed", "failed"]
    assert [i.attempts for i in items] == [1, 3, 2, 3, 1]
    assert [len(r.received) for r in (ok, flaky, busy, broken, gone)] == [1, 3, 2, 3, 1]
    # Each item's own webhook-id, the same on every retry.
    for n, receiver in enumerate((ok, flaky, busy, broken, gone)):
        assert {r.headers["webhook-id"] for r in receiver.received} == {ids[n]}
    # The backoffs are durable timers: 10 s, then 20 s (exponential), and the 120 s Retry-After. Each
    # counts from its attempt's end, so it is the time the workflow task took short of the backoff
    # (real seconds on a loaded machine; a timer for what is already due rounds to 0 and is left out).
    timers = await events(handle, EventType.EVENT_TYPE_TIMER_STARTED)
    waits = sorted(t.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds() for t in timers)
    backoffs = [w for w in waits if w >= 1]
    expected = [10, 20, 90]  # 10 s, 10+20 s for the flaky item; the busy one at 120 s
    assert len(backoffs) == 3 and all(e - 5 < w <= e + 0.5 for w, e in zip(backoffs, expected)), waits
    # The failed items are dead letters of their own: failed runs of their job ids, with their reasons.
    assert [v.phase.value for v in views] == ["completed", "completed", "completed", "failed", "failed"]
    assert views[3].attempts == 3 and "500" in views[3].error
    assert views[4].attempts == 1 and "404" in views[4].error
    described = await client.get_workflow_handle(ids[3]).describe()
    assert described.workflow_type == "NotificationWorkflow" and described.status.name == "FAILED"


async def test_a_batch_cancelled_in_temporal_cancels_its_waiting_items_and_completes(time_env, make_settings):
    client = herald_client(time_env)
    spec = replace(job_spec("webhook", family="notify", delay_ms=3_600_000), job_id=new_batch_id())
    with HttpReceiver() as receiver:
        batch = BatchInput(job=spec, webhooks=[BatchWebhook(url=receiver.url, data={"n": n}) for n in range(3)])
        async with running_workers(client, make_settings()):
            handle = await start_batch(client, batch, None, CHUNK_ITEMS)
            await wait_for_timer(handle)
            # As the Web UI or `temporal workflow cancel` would: not through the API's update.
            await handle.cancel()
            result = await handle.result()
            assert (await handle.describe()).status.name == "COMPLETED"
            view = await load_job(client, f"{spec.job_id}-1", None)
    assert [i.phase.value for i in result.items] == ["cancelled"] * 3
    assert view.phase.value == "cancelled" and not receiver.received


async def test_an_item_that_fails_after_its_batch_was_cancelled_is_cancelled_not_retried(time_env, make_settings):
    client = herald_client(time_env)
    spec = replace(job_spec("webhook", family="notify", attempts=3, backoff_ms=1000), job_id=new_batch_id())
    # In flight when the cancel comes (answered a second later), then a retryable 503.
    with HttpReceiver([Answer(503, delay_s=1.0)]) as receiver:
        batch = BatchInput(job=spec, webhooks=[BatchWebhook(url=receiver.url, data={"n": n}) for n in range(2)])
        async with running_workers(client, make_settings()):
            handle = await start_batch(client, batch, None, CHUNK_ITEMS)
            await receiver.until_received(2)
            await handle.cancel()
            result = await handle.result()
    # Final, so the batch is done; each sent once, never again after the cancel.
    assert [i.phase.value for i in result.items] == ["cancelled"] * 2
    assert [i.attempts for i in result.items] == [1, 1] and len(receiver.received) == 2
    assert all("503" in (i.error or "") for i in result.items)


async def test_a_chunk_whose_batch_never_started_ends_after_its_hold_having_sent_nothing(time_env, make_settings):
    """The API stopped after starting a chunk and before the batch's run: no client was told the batch
    was accepted, so its chunk must not send (a retried POST starts the batch afresh under the same id)."""
    client = herald_client(time_env)
    spec = replace(job_spec("webhook", family="notify"), job_id=new_batch_id())
    with HttpReceiver() as receiver:
        batch = BatchInput(job=spec, webhooks=[BatchWebhook(url=receiver.url, data={"n": n}) for n in range(4)])
        held = chunks(batch, 2)[1]
        async with running_workers(client, make_settings()):
            handle = await client.start_workflow(
                BatchWorkflow.run, held, id=batch_chunk_id(spec.job_id, 1), task_queue=TASK_QUEUES["webhook"]
            )
            result = await handle.result()
    assert [i.phase.value for i in result.items] == ["cancelled"] * 2
    assert all("never accepted" in (i.error or "") for i in result.items) and not receiver.received
    (hold,) = await events(handle, EventType.EVENT_TYPE_TIMER_STARTED)
    assert hold.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() == CHUNK_HOLD
    assert not await events(handle, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)


async def test_a_chunked_batch_continues_as_new_and_still_counts_every_chunk(time_env, make_settings):
    """Its history bounded (here past 12 events, two per chunk): the counts reported before the
    continue-as-new travel with it, and those after it add up to the whole batch."""
    client = herald_client(time_env)
    spec = replace(job_spec("webhook", family="notify"), job_id=new_batch_id())
    with HttpReceiver([Answer(200)]) as ok, HttpReceiver([Answer(404)]) as gone:
        urls = [ok.url] * 9 + [gone.url] * 3
        batch = BatchInput(job=spec, webhooks=[BatchWebhook(url=u, data={"n": n}) for n, u in enumerate(urls)])
        async with running_workers(client, make_settings()):
            for k, chunk in enumerate(chunks(batch, 2)):
                await client.start_workflow(
                    BatchWorkflow.run, chunk, id=batch_chunk_id(spec.job_id, k), task_queue=TASK_QUEUES["webhook"]
                )
            parent = ChunkedBatchInput(
                batch_id=spec.job_id,
                channel="webhook",
                total=12,
                chunk_items=2,
                created_at=spec.created_at,
                history_events=12,
            )
            handle = await client.start_workflow(
                ChunkedBatchWorkflow.run, parent, id=spec.job_id, task_queue=TASK_QUEUES["webhook"]
            )
            summary = await handle.result()
            first_run = client.get_workflow_handle(spec.job_id, run_id=handle.first_execution_run_id)
            continued = await events(first_run, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW)
            released = await events(first_run, EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED)
    assert {p: n for p, n in summary.counts.items() if n} == {"completed": 9, "failed": 3} and summary.total == 12
    assert continued and len(released) == 6  # every chunk released once, by the first run
    assert len(ok.received) == 9 and len(gone.received) == 3


async def wait_for_timer(handle, timeout_s: float = 10) -> None:
    # Polled in wall time: time skips only while a result is awaited.
    for _ in range(int(timeout_s / 0.05)):
        if await events(handle, EventType.EVENT_TYPE_TIMER_STARTED):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the batch never started its delay timer")
