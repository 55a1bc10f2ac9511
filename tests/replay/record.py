"""Record the workflow histories that tests/replay/test_replay.py replays.

    python -m tests.replay.record tests/replay/histories/vN

Runs each scenario through Herald's real workers against Temporal's time-skipping test server,
with real SMTP (the dev SMTP sink) and real HTTP (a local receiver) at the edges, checks that
it ended as expected, and saves its history as OUT_DIR/<scenario>.json. Jobs are started the
way the API starts them (api.jobs.starter), so a recording matches what production runs write.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

import workflows
from api.jobs.starter import email_job, webhook_job
from common.runtime import exit_skipping_teardown
from devstack.smtp_sink import SmtpSink
from tests.replay.recording import (
    Recorder,
    assert_run,
    event_types,
    failed,
    only_child,
    time_skipping_server,
    wait_for_event,
)
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import free_port, herald_client, job_spec, local_settings, running_workers

TO = "ada@example.com"
DATA = {"event": "order.shipped", "orderId": 42}


# ---- the scenarios: each checks how it ended (Temporal's run status, what the far side got) -----
async def email_sent(rec: Recorder) -> None:
    mails = rec.sent_mails()
    handle = await rec.start(email_job(job_spec("email", recipient=TO), TO, "Hello", "Body text"))
    await handle.result()
    await assert_run(handle, WorkflowExecutionStatus.COMPLETED)
    assert rec.sent_mails() == mails + 1
    await rec.save("email_sent", handle)


async def webhook_500_500_200(rec: Recorder) -> None:
    with HttpReceiver([Answer(500), Answer(500), Answer(200, {"received": True})]) as receiver:
        url = receiver.url + "/hooks"
        handle = await rec.start(webhook_job(job_spec("webhook", family="notify", recipient=url), url, DATA))
        await handle.result()
    await assert_run(handle, WorkflowExecutionStatus.COMPLETED)
    assert len(receiver.received) == 3
    await rec.save("webhook_500_500_200", handle)


async def failed_after_3_attempts(rec: Recorder) -> None:
    with HttpReceiver([Answer(500, {"error": "down"})]) as receiver:
        spec = job_spec("webhook", family="notify", recipient=receiver.url, attempts=3)
        handle = await rec.start(webhook_job(spec, receiver.url, DATA))
        await failed(handle)
    await assert_run(handle, WorkflowExecutionStatus.FAILED)
    assert len(receiver.received) == 3
    await rec.save("failed_after_3_attempts", handle)


async def delay_then_cancel(rec: Recorder) -> None:
    mails = rec.sent_mails()
    handle = await rec.start(email_job(job_spec("email", recipient=TO, delay_ms=3_600_000), TO, "Later", "Body"))
    await wait_for_event(handle, EventType.EVENT_TYPE_TIMER_STARTED)
    await handle.cancel()
    await failed(handle)
    await assert_run(handle, WorkflowExecutionStatus.CANCELED)
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in await event_types(handle)
    assert rec.sent_mails() == mails
    await rec.save("delay_then_cancel", handle)


async def result_callback(rec: Recorder) -> None:
    with HttpReceiver() as receiver:
        spec = job_spec("email", recipient=TO, callback_url=receiver.url + "/done")
        handle = await rec.start(email_job(spec, TO, "Hi", "Body"))
        await handle.result()
    await assert_run(handle, WorkflowExecutionStatus.COMPLETED)
    [callback] = receiver.received
    assert callback.json()["type"] == "job.completed"
    child_handle = await only_child(rec.client, handle)
    await assert_run(child_handle, WorkflowExecutionStatus.COMPLETED)
    await rec.save("result_callback", handle)
    await rec.save("result_callback_child", child_handle)


async def delayed_24h_waiting(rec: Recorder) -> None:
    """An open run: a job already waiting on its 24 h timer when a new worker version starts."""
    mails = rec.sent_mails()
    handle = await rec.start(
        email_job(job_spec("email", recipient=TO, delay_ms=24 * 3_600_000), TO, "Tomorrow", "Body")
    )
    await wait_for_event(handle, EventType.EVENT_TYPE_TIMER_STARTED)
    await assert_run(handle, WorkflowExecutionStatus.RUNNING)
    await rec.save("delayed_24h_waiting", handle)
    # Before any other handle.result() lets the server skip 24 h.
    await handle.terminate("recorded while waiting")
    assert rec.sent_mails() == mails


async def record(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"recording the workflows in {Path(workflows.__file__).parent} into {out_dir}")
    async with time_skipping_server() as env:
        with tempfile.TemporaryDirectory() as tmp, SmtpSink(Path(tmp) / "outbox", port=free_port()) as sink:
            rec = Recorder(herald_client(env), out_dir, sink.outbox)
            async with running_workers(env.client, local_settings(Path(tmp), smtp_port=sink.port)):
                await email_sent(rec)
                await webhook_500_500_200(rec)
                await failed_after_3_attempts(rec)
                await delay_then_cancel(rec)
                await result_callback(rec)
                await delayed_24h_waiting(rec)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.replay.record OUT_DIR")
    logging.getLogger("temporalio").setLevel(logging.ERROR)  # each expected failed attempt logs a traceback
    asyncio.run(record(Path(sys.argv[1])))
    exit_skipping_teardown(0)  # the SDK's runtime can crash interpreter teardown
