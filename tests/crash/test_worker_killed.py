"""`kill -9` of the worker in the middle of sends: a new worker finishes every job, soon.

Two sends are in flight when the worker dies:
- a webhook's second attempt, an ordinary activity that heartbeats (its first attempt was
  answered 503): Temporal times it out on the missing heartbeat (10 s, the default) and retries
  it; the attempt log shows attempt 2 as lost;
- an SMS's first attempt, a local activity inside the run's workflow task: the workflow task
  times out (10 s) and the next worker runs the first attempt again, as attempt 2.
Each far side sees one idempotency key on every request it got.
"""

from __future__ import annotations

import asyncio
import time

from temporalio.api.enums.v1 import EventType

from activities.attempt_log import LOST_HEARTBEAT
from tests.crash.helpers import HEARTBEAT_TIMEOUT_S, Step, arrived, eventually, final_since
from tests.support.temporal import herald_client

# Well under the 30 s start-to-close a lost attempt used to wait out.
ACTIVITY_RECOVERY_LIMIT_S = 20
FIRST_ATTEMPT_RECOVERY_LIMIT_S = 25


async def test_a_killed_worker_loses_no_job_and_the_attempt_log_shows_the_lost_attempt(
    api, receiver, start_worker, dev_env
):
    hook_url = receiver.script("/hook", Step(503), Step(hold=True), Step(200))
    receiver.script("/sms", Step(hold=True), Step(200))
    first = start_worker()

    hook = await api.post(
        "/notify/webhook",
        json={"url": hook_url, "data": {"order": 42}, "attempts": 5, "backoff": {"type": "fixed", "delay": 200}},
    )
    sms = await api.post("/jobs/sms", json={"phone": "+14155550100", "message": "code 123456"})
    assert hook.status_code == 202 and sms.status_code == 202, (hook.text, sms.text)
    hook_id, sms_id = hook.json()["notificationId"], sms.json()["jobId"]

    # Both sends are in flight: the webhook's attempt 2 (held), the SMS's attempt 1 (held).
    await eventually("the webhook's second attempt", arrived(receiver, "/hook", 2))
    await eventually("the SMS's first attempt", arrived(receiver, "/sms", 1))

    # Attempt 2 has heartbeated (the log it inherited and which attempt it is).
    async def heartbeated():
        pending = (
            await herald_client(dev_env).get_workflow_handle(hook_id).describe()
        ).raw_description.pending_activities
        return pending and len(pending[0].heartbeat_details.payloads) == 2

    await eventually("attempt 2's heartbeat", heartbeated, timeout=10)

    first.process.kill()
    killed_at = time.monotonic()
    assert first.process.wait(timeout=10) == -9
    restarting = time.monotonic()
    start_worker()
    # The limits count from the kill; a loaded machine's slow start of the next worker is not the
    # server's doing, so it is added (the webhook's bound stays under the 30 s start-to-close).
    restart_s = time.monotonic() - restarting

    (hook_state, hook_recovered), (sms_state, sms_recovered) = await asyncio.gather(
        final_since(api, hook_id, killed_at), final_since(api, sms_id, killed_at)
    )
    print(
        f"recovered: webhook attempt (heartbeat timeout {HEARTBEAT_TIMEOUT_S} s) in {hook_recovered:.1f} s, "
        f"SMS first attempt (local activity) in {sms_recovered:.1f} s"
    )

    # The webhook: attempt 1 answered 503, attempt 2 lost with the worker, attempt 3 delivered.
    assert hook_state["status"] == "completed", hook_state
    assert hook_state["attempts"] == 3, hook_state
    log = hook_state["deliveries"]
    assert [d["attempt"] for d in log] == [1, 2, 3], log
    assert (log[0]["succeeded"], log[0]["statusCode"]) == (False, 503), log
    assert (log[1]["succeeded"], log[1]["error"]) == (False, LOST_HEARTBEAT), log
    # When the lost attempt started (its heartbeat said), and when the next one found it lost.
    assert log[0]["finishedAt"] < log[1]["startedAt"] < log[1]["finishedAt"] <= log[2]["startedAt"], log
    assert (log[2]["succeeded"], log[2]["statusCode"]) == (True, 200), log
    hooks = receiver.requests_to("/hook")
    assert len(hooks) == 3
    assert {r.headers["webhook-id"] for r in hooks} == {hook_id}
    assert {r.body for r in hooks} == {hooks[0].body}
    # Retried once the heartbeats stopped, not after the attempt's 30 s start-to-close.
    assert hook_recovered < min(ACTIVITY_RECOVERY_LIMIT_S + restart_s, 30), (hook_recovered, restart_s)
    timeouts = [
        e
        async for e in herald_client(dev_env).get_workflow_handle(hook_id).fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT
    ]
    assert timeouts == []  # retried by the server under the retry policy: the activity never timed out

    # The SMS: its first attempt ran again on the new worker (the workflow task timed out), and the
    # log shows the one cut short (tests/crash/test_interrupted_first_attempt.py).
    assert (sms_state["status"], sms_state["attempts"]) == ("completed", 2), sms_state
    assert [(d["attempt"], d["succeeded"], d.get("interrupted")) for d in sms_state["deliveries"]] == [
        (1, False, True),
        (2, True, None),
    ], sms_state
    sent = receiver.requests_to("/sms")
    assert len(sent) == 2
    assert {r.headers["idempotency-key"] for r in sent} == {sms_id}
    assert {r.json()["idempotencyKey"] for r in sent} == {sms_id}
    assert sms_recovered < FIRST_ATTEMPT_RECOVERY_LIMIT_S + restart_s, (sms_recovered, restart_s)
    task_timeouts = [
        e
        async for e in herald_client(dev_env).get_workflow_handle(sms_id).fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
    ]
    assert len(task_timeouts) == 1
