"""SIGTERM to a worker with sends in flight: they finish within the shutdown grace, or are handed back.

Slow sends are in flight when the worker gets SIGTERM (a 6 s grace here); the receiver holds
each until the signal is sent, then answers late (so all are in flight at the signal however
long a loaded machine took to get them there):
- first attempts (local activities inside the workflow task) and second attempts (activities),
  each answered 3 s after the signal: they finish, and nothing is sent twice;
- a second attempt whose receiver answers only 15 s after it: handed back when the grace runs
  out, logged as such, and retried by the next worker;
- a second attempt that heartbeats and then fails (a 503 4 s after it): its record reaches the
  next attempt as usual, nothing is taken for lost.
Then a new worker starts, and every job completes.

A first attempt the SDK still runs after the grace (it waits for local activities whatever the
grace) does not hold the worker up: it exits, and the attempt's workflow task times out and runs
again on the next worker.
"""

from __future__ import annotations

import asyncio
import signal
import time

from activities.attempt_log import HANDED_BACK
from tests.crash.helpers import Step, arrived, eventually, final
from tests.support.temporal import herald_client
from worker import DRAIN_MARGIN_S

GRACE_S = 6
SLOW_S = 3.0


async def test_sigterm_lets_sends_in_flight_finish_and_hands_back_the_ones_that_do_not(
    api, receiver, start_worker, dev_env
):
    first = start_worker(HERALD_WORKER_SHUTDOWN_GRACE_SECONDS=str(GRACE_S))
    retry = {"attempts": 3, "backoff": {"type": "fixed", "delay": 100}}
    paths: dict[str, int] = {}  # path → the requests in flight once all are

    async def send(path: str, *steps: Step, in_flight: int) -> str:
        url = receiver.script(path, *steps)
        paths[path] = in_flight
        answer = await api.post("/notify/webhook", json={"url": url, "data": {"path": path}, **retry})
        assert answer.status_code == 202, answer.text
        return answer.json()["notificationId"]

    seconds = [
        await send(f"/second-{n}", Step(503), Step(200, hold=True, delay_s=SLOW_S), in_flight=2) for n in range(2)
    ]
    stuck = await send("/stuck", Step(503), Step(200, hold=True, delay_s=15), Step(200), in_flight=2)
    failing = await send("/slow-503", Step(503), Step(503, hold=True, delay_s=4), Step(200), in_flight=2)
    for path, count in paths.items():
        await eventually(f"{path} in flight", arrived(receiver, path, count))
    # The first attempts last, so that every slow send is in flight at once.
    firsts = [await send(f"/first-{n}", Step(200, hold=True, delay_s=SLOW_S), in_flight=1) for n in range(3)]
    for n in range(3):
        await eventually(f"/first-{n} in flight", arrived(receiver, f"/first-{n}", 1))

    first.process.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    receiver.released.set()
    # Every slow send was still in flight when the signal came.
    assert {r.path for r in receiver.received if r.answered_at is None or r.answered_at > stopping} == set(paths)
    assert first.process.wait(timeout=GRACE_S + 20) == 0, first.log()
    events = [line.get("message", "") for line in first.events()]
    assert any(m.startswith("worker stopping") for m in events), first.log()
    # Within the grace, not after the margin: every send reported back (the worker's own clock says so;
    # the test's would count a loaded machine's slow start-up and exit too).
    [drained] = [m for m in events if m.startswith("worker drained in ")]
    assert float(drained.removeprefix("worker drained in ").split()[0]) < GRACE_S + DRAIN_MARGIN_S, drained
    assert not any(m.startswith("worker stopping without") for m in events), first.log()

    start_worker()
    states = dict(
        zip(
            firsts + seconds + [stuck, failing],
            await asyncio.gather(*(final(api, job) for job in firsts + seconds + [stuck, failing])),
        )
    )
    assert {s["status"] for s in states.values()} == {"completed"}, states

    # The slow sends finished on the stopping worker: each receiver got each exactly once.
    for path in [f"/first-{n}" for n in range(3)] + [f"/second-{n}" for n in range(2)]:
        assert len(receiver.requests_to(path)) == paths[path], (path, receiver.requests_to(path))
    for job in firsts:
        assert states[job]["attempts"] == 1, states[job]
    for job in seconds:
        assert [(d["attempt"], d["succeeded"]) for d in states[job]["deliveries"]] == [(1, False), (2, True)]

    # The one that outlived the grace was handed back and sent again, with the same webhook-id.
    log = states[stuck]["deliveries"]
    assert [(d["attempt"], d["succeeded"], d["error"]) for d in log] == [
        (1, False, "Webhook receiver answered HTTP 503"),
        (2, False, HANDED_BACK),
        (3, True, None),
    ], log
    assert {r.headers["webhook-id"] for r in receiver.requests_to("/stuck")} == {stuck}
    assert len(receiver.requests_to("/stuck")) == 3

    # A slow failure after heartbeats: its own record, not a lost one.
    log = states[failing]["deliveries"]
    assert [(d["attempt"], d["succeeded"], d["statusCode"]) for d in log] == [
        (1, False, 503),
        (2, False, 503),
        (3, True, 200),
    ], log
    assert len(receiver.requests_to("/slow-503")) == 3

    # Nothing stuck: no run still has work pending.
    for job in states:
        description = await herald_client(dev_env).get_workflow_handle(job).describe()
        assert not description.raw_description.pending_activities, job


async def test_a_first_attempt_running_past_the_grace_does_not_hold_the_worker_up(api, receiver, start_worker):
    first = start_worker(HERALD_WORKER_SHUTDOWN_GRACE_SECONDS="1")
    url = receiver.script("/slow-first", Step(hold=True), Step(200))
    job = (await api.post("/notify/webhook", json={"url": url, "data": {}})).json()["notificationId"]
    await eventually("the first attempt in flight", arrived(receiver, "/slow-first", 1))

    first.process.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    assert first.process.wait(timeout=30) == 0, first.log()
    # Not held up by the attempt (held for 60 s): out after the grace and the margin, give or take a
    # loaded machine's exit.
    assert time.monotonic() - stopping < 1 + DRAIN_MARGIN_S + 10
    events = [line.get("message", "") for line in first.events()]
    assert any(m.startswith("worker stopping without the first attempts") for m in events), first.log()

    start_worker()
    state = await final(api, job)
    # The attempt left behind reached the receiver: the log counts it, as interrupted.
    assert (state["status"], state["attempts"]) == ("completed", 2), state
    assert [(d["attempt"], d["succeeded"], d.get("interrupted")) for d in state["deliveries"]] == [
        (1, False, True),
        (2, True, None),
    ], state
    sent = receiver.requests_to("/slow-first")
    assert len(sent) == 2 and {r.headers["webhook-id"] for r in sent} == {job}
