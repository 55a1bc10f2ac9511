"""Scale-out: two worker processes (`python -m worker`, as deployed) on the same task queues.

Temporal hands each task to one of them: every job and every batch item runs, and runs once. The
far side sees each job's (and item's) idempotency key on exactly one request, and both workers did
part of the work.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.crash.helpers import Receiver, Step, eventually, final

JOBS_PER_CHANNEL = 30
BATCH_ITEMS = 60


def sends_by_worker(workers) -> list[Counter]:
    """Per worker process: how many send attempts it picked up, by job id."""
    return [Counter(e["job_id"] for e in w.events() if e.get("event") == "attempt.picked") for w in workers]


async def test_two_workers_run_every_job_once(api, receiver: Receiver, start_worker):
    hook_url = receiver.script("/hook", Step(200, delay_s=0.05))
    receiver.script("/sms", Step(200, delay_s=0.05))
    batch_url = receiver.script("/batch", Step(200, delay_s=0.05))
    workers = [start_worker(), start_worker()]

    posts = [api.post("/notify/webhook", json={"url": hook_url, "data": {"n": n}}) for n in range(JOBS_PER_CHANNEL)]
    posts += [
        api.post("/jobs/sms", json={"phone": "+14155550100", "message": f"code {n:06d}"})
        for n in range(JOBS_PER_CHANNEL)
    ]
    answers = await asyncio.gather(*posts)
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers if a.status_code != 202]
    job_ids = [a.json().get("notificationId") or a.json()["jobId"] for a in answers]
    # And batch items: each a job of its own, sent by slices that either worker may run.
    batch = await api.post(
        "/notify/batch",
        json={"channel": "webhook", "items": [{"url": batch_url, "data": {"n": n}} for n in range(BATCH_ITEMS)]},
    )
    assert batch.status_code == 202, batch.text
    item_ids = batch.json()["jobIds"]

    states = await asyncio.gather(*(final(api, job_id, timeout=90) for job_id in job_ids + item_ids))
    assert {s["status"] for s in states} == {"completed"}
    assert all(s["attempts"] == 1 for s in states), [(s["id"], s["error"]) for s in states if s["attempts"] != 1]

    # Each job and each item reached the far side once, under its own key.
    hook_ids = Counter(r.headers["webhook-id"] for r in receiver.requests_to("/hook"))
    sms_keys = Counter(r.headers["idempotency-key"] for r in receiver.requests_to("/sms"))
    item_hook_ids = Counter(r.headers["webhook-id"] for r in receiver.requests_to("/batch"))
    assert hook_ids == Counter(job_ids[:JOBS_PER_CHANNEL])
    assert sms_keys == Counter(job_ids[JOBS_PER_CHANNEL:])
    assert item_hook_ids == Counter(item_ids)

    # Each attempt ran on exactly one worker, and both workers took a share.
    await eventually("both workers' logs", lambda: _logged(workers, len(job_ids)), timeout=10)
    picked = sends_by_worker(workers)
    assert sum(picked, Counter()) == Counter(job_ids)
    assert all(len(p) > 0 for p in picked), [len(p) for p in picked]


async def _logged(workers, count: int) -> bool:
    return sum(len(p) for p in sends_by_worker(workers)) >= count
