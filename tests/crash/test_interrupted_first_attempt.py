"""`kill -9` of the worker while first attempts are in flight: each attempt cut short counts.

A job's first attempt runs as a local activity inside a workflow task. When its worker dies, the
task times out and the next worker runs it again, and with it the attempt, again as "attempt 1".
The receiver saw both requests (one webhook-id), so the job's log must show both: the first as
interrupted, the rerun as attempt 2 (activities/attempt_log.py). Three sends are held when the
worker dies:
- a webhook sent at once, whose rerun is answered 200: completed after 2 attempts;
- a webhook sent at once, whose rerun is answered 503: its retries number on from there (3);
- a webhook with a short delay, whose first attempt ran in a later workflow task of a run the
  killed worker had cached: the next worker rebuilds the run by replay and finds the cut-short task.
"""

from __future__ import annotations

from activities.attempt_log import INTERRUPTED
from tests.crash.helpers import Step, arrived, eventually, final


async def test_a_first_attempt_cut_short_by_a_crash_counts_and_shows_as_interrupted(api, receiver, start_worker):
    at_once = receiver.script("/at-once", Step(hold=True), Step(200))
    retried = receiver.script("/retried", Step(hold=True), Step(503), Step(200))
    later = receiver.script("/later", Step(hold=True), Step(200))
    first = start_worker()

    fast = {"backoff": {"type": "fixed", "delay": 200}}
    jobs = {}
    for path, url, options in [
        ("/at-once", at_once, {}),
        ("/retried", retried, fast),
        ("/later", later, {"delay": 1000}),
    ]:
        response = await api.post("/notify/webhook", json={"url": url, "data": {"path": path}, **options})
        assert response.status_code == 202, response.text
        jobs[path] = response.json()["notificationId"]
    for path in jobs:
        await eventually(f"the first attempt to {path}", arrived(receiver, path, 1))

    first.process.kill()
    assert first.process.wait(timeout=10) == -9
    start_worker()

    states = {path: await final(api, job_id, timeout=60) for path, job_id in jobs.items()}

    for path, state in states.items():
        assert state["status"] == "completed", state
        log = state["deliveries"]
        cut = log[0]
        assert (cut["attempt"], cut["succeeded"], cut["error"], cut["interrupted"]) == (1, False, INTERRUPTED, True)
        assert cut["startedAt"] <= cut["finishedAt"] <= log[1]["startedAt"], log
        assert all("interrupted" not in d for d in log[1:]), log
        # What the receiver saw: one request per attempt in the log, all with the job's webhook-id.
        requests = receiver.requests_to(path)
        assert len(requests) == len(log) == state["attempts"], (path, log, len(requests))
        assert {r.headers["webhook-id"] for r in requests} == {jobs[path]}
        notification = (await api.get(f"/notifications/{jobs[path]}")).json()
        assert notification["attempts"] == state["attempts"], notification

    assert [(d["attempt"], d["succeeded"]) for d in states["/at-once"]["deliveries"]] == [(1, False), (2, True)]
    assert [(d["attempt"], d["succeeded"], d["statusCode"]) for d in states["/retried"]["deliveries"]] == [
        (1, False, None),
        (2, False, 503),
        (3, True, 200),
    ]
    assert [(d["attempt"], d["succeeded"]) for d in states["/later"]["deliveries"]] == [(1, False), (2, True)]
