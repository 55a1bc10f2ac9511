"""Record BatchWorkflow histories (and a batch item's dead-letter run) for tests/replay/test_replay.py.

    python -m tests.replay.record_batch tests/replay/histories/batch-v1 [SCENARIO ...]

Through Herald's real workers on Temporal's time-skipping test server, with real HTTP receivers
at the edge; batches are started the way the API starts them (api.batches.service.start_batch):
- `batch_retries_and_dead_letter`: three webhook items, one delivered at once, one after a 500
  and its backoff timer, one refused for good (404): completed, with a dead-letter child started;
- `batch_dead_letter_item`: that child, a NotificationWorkflow run with `batch_failure`: failed;
- `batch_delayed_waiting`: an open run still on its 24 h delay (then terminated);
- `batch_cancelled_in_flight` (batch-v2, since the `batch-cancel-stops-retries` patch): two items
  in flight when the batch is cancelled, both answered 503 after it: cancelled, not retried.
- batch-v3, since batches of more than one run (workflows/batch_chunks.py) and batch callbacks:
  `batch_one_run_with_callback`: a batch of one run that posts its `batch.completed` callback
  (with `batch_completed_callback`, that CallbackWorkflow); `batch_chunked_with_callback`: three
  items in chunks of two, the ChunkedBatchWorkflow run (released its chunks, took their counts,
  posted the callback) and `batch_chunk_released`, its second chunk; `batch_chunk_never_released`:
  a chunk whose batch's run never started, ended unsent after its hold.
Names after OUT_DIR record only those scenarios (a new folder for one patch's histories).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from api.batches.service import chunks, new_batch_id, start_batch
from common.models import TASK_QUEUES, BatchInput, BatchWebhook, batch_chunk_id
from common.runtime import exit_skipping_teardown
from tests.replay.recording import Recorder, assert_run, failed, only_child, time_skipping_server, wait_for_event
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import herald_client, job_spec, local_settings, running_workers
from workflows.batch import BatchWorkflow

# Every batch here fits in one run (a chunked one: tests/api/test_batch_chunks.py).
CHUNK_ITEMS = 1000


def _batch(urls: list[str], **spec_fields) -> BatchInput:
    spec = replace(job_spec("webhook", family="notify", **spec_fields), job_id=new_batch_id())
    return BatchInput(
        job=spec,
        webhooks=[BatchWebhook(url=u, data={"n": n}) for n, u in enumerate(urls)],
        slice_items=2,
        slices_in_flight=2,
    )


async def retries_and_dead_letter(rec: Recorder) -> None:
    with (
        HttpReceiver([Answer(200)]) as ok,
        HttpReceiver([Answer(500), Answer(200)]) as flaky,
        HttpReceiver([Answer(404)]) as gone,
    ):
        batch = _batch([ok.url, flaky.url, gone.url], attempts=3, backoff_ms=5000)
        handle = await start_batch(rec.client, batch, None, CHUNK_ITEMS)
        result = await handle.result()
    assert [i.phase.value for i in result.items] == ["completed", "completed", "failed"], result.items
    await assert_run(handle, WorkflowExecutionStatus.COMPLETED)
    child_handle = await only_child(rec.client, handle)
    await failed(child_handle)
    await assert_run(child_handle, WorkflowExecutionStatus.FAILED)
    await rec.save("batch_retries_and_dead_letter", handle)
    await rec.save("batch_dead_letter_item", child_handle)


async def delayed_waiting(rec: Recorder) -> None:
    with HttpReceiver() as receiver:
        handle = await start_batch(rec.client, _batch([receiver.url], delay_ms=24 * 3_600_000), None, CHUNK_ITEMS)
        await wait_for_event(handle, EventType.EVENT_TYPE_TIMER_STARTED)
        await assert_run(handle, WorkflowExecutionStatus.RUNNING)
        await rec.save("batch_delayed_waiting", handle)
        await handle.terminate("recorded while waiting")
    assert not receiver.received


async def cancelled_in_flight(rec: Recorder) -> None:
    # In flight when the cancel comes (answered a second later), then a retryable 503.
    with HttpReceiver([Answer(503, delay_s=1.0)]) as receiver:
        handle = await start_batch(
            rec.client, _batch([receiver.url] * 2, attempts=3, backoff_ms=1000), None, CHUNK_ITEMS
        )
        await receiver.until_received(2)
        await handle.cancel()
        result = await handle.result()
    assert [i.phase.value for i in result.items] == ["cancelled"] * 2, result.items
    assert [i.attempts for i in result.items] == [1, 1] and len(receiver.received) == 2
    await assert_run(handle, WorkflowExecutionStatus.COMPLETED)
    await rec.save("batch_cancelled_in_flight", handle)


async def one_run_with_callback(rec: Recorder) -> None:
    with HttpReceiver() as receiver, HttpReceiver() as callback:
        batch = replace(_batch([receiver.url] * 2), callback_url=callback.url)
        handle = await start_batch(rec.client, batch, None, CHUNK_ITEMS)
        await handle.result()
        await assert_run(handle, WorkflowExecutionStatus.COMPLETED)
        child = await only_child(rec.client, handle)
        await child.result()
        assert len(callback.received) == 1
    await rec.save("batch_one_run_with_callback", handle)
    await rec.save("batch_completed_callback", child)


async def chunked_with_callback(rec: Recorder) -> None:
    with HttpReceiver() as receiver, HttpReceiver() as callback:
        batch = replace(_batch([receiver.url] * 3), callback_url=callback.url)
        handle = await start_batch(rec.client, batch, None, 2)
        await handle.result()
        await (await only_child(rec.client, handle)).result()
        assert len(receiver.received) == 3 and len(callback.received) == 1
    await assert_run(handle, WorkflowExecutionStatus.COMPLETED)
    await rec.save("batch_chunked_with_callback", handle)
    await rec.save("batch_chunk_released", rec.client.get_workflow_handle(batch_chunk_id(batch.job.job_id, 1)))


async def chunk_never_released(rec: Recorder) -> None:
    with HttpReceiver() as receiver:
        [chunk, _] = chunks(_batch([receiver.url] * 2), 1)
        handle = await rec.client.start_workflow(
            BatchWorkflow.run, chunk, id=batch_chunk_id(chunk.job.job_id, 0), task_queue=TASK_QUEUES["webhook"]
        )
        result = await handle.result()
    assert [i.phase.value for i in result.items] == ["cancelled"] and not receiver.received
    await rec.save("batch_chunk_never_released", handle)


SCENARIOS = {
    "batch_retries_and_dead_letter": retries_and_dead_letter,
    "batch_delayed_waiting": delayed_waiting,
    "batch_cancelled_in_flight": cancelled_in_flight,
    "batch_one_run_with_callback": one_run_with_callback,
    "batch_chunked_with_callback": chunked_with_callback,
    "batch_chunk_never_released": chunk_never_released,
}


async def record(out_dir: Path, names: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    async with time_skipping_server() as env:
        with tempfile.TemporaryDirectory() as tmp:
            rec = Recorder(herald_client(env), out_dir, Path(tmp) / "outbox")
            async with running_workers(env.client, local_settings(Path(tmp))):
                for name in names:
                    await SCENARIOS[name](rec)


if __name__ == "__main__":
    if len(sys.argv) < 2 or not set(sys.argv[2:]) <= set(SCENARIOS):
        sys.exit(f"usage: python -m tests.replay.record_batch OUT_DIR [{' '.join(SCENARIOS)}]")
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    asyncio.run(record(Path(sys.argv[1]), sys.argv[2:] or list(SCENARIOS)))
    exit_skipping_teardown(0)
