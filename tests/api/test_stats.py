"""GET /admin/stats and GET /admin/jobs: counts by type and status, the DLQ's size, the latest jobs.

The dev server is shared by the whole session, so the tests read the counts before and after and
assert what their own jobs moved (visibility trails a change by a moment: they poll).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from api.admin.service import KINDS, STATUSES, status_word
from tests.api.helpers import ADMIN, AUTH, assert_error, check_schema, failed_webhook, listed, until_final
from tests.support.http_receiver import Answer, HttpReceiver

pytestmark = pytest.mark.usefixtures("workers")
DEADLINE_S = 15.0


async def stats(api) -> dict:
    response = await api.get("/admin/stats", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


async def stats_until(api, done: Callable[[dict], bool], what: str) -> dict:
    end = time.monotonic() + DEADLINE_S
    while True:
        body = await stats(api)
        if done(body):
            return body
        assert time.monotonic() < end, f"the stats never showed {what}; last answer {body}"
        await asyncio.sleep(0.2)


def n(body: dict, kind: str, status: str) -> int:
    return body["counts"][kind][status]


async def all_dead_letters(api) -> list[dict]:
    items, cursor = [], None
    while True:
        params = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        response = await api.get("/admin/dlq", params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        cursor = response.json()["nextCursor"]
        if not cursor:
            return items


async def test_every_type_has_every_status_word(api):
    body = await stats(api)
    assert set(body) == {"counts", "dlq", "deferred", "digested"}, body
    assert set(body["counts"]) == set(KINDS) == {"email", "sms", "webhook", "cleanup", "report"}
    for kind, counts in body["counts"].items():
        assert (
            list(counts)
            == list(STATUSES)
            == ["queued", "delayed", "processing", "completed", "failed", "cancelled", "suppressed"]
        ), kind
        assert all(isinstance(v, int) and v >= 0 for v in counts.values()), counts
    assert all(isinstance(body[n], int) and body[n] >= 0 for n in ("dlq", "deferred", "digested")), body


async def test_counts_follow_jobs_through_their_states(api, smtp_sink):
    before = await stats(api)
    # A delayed email counts as delayed, then as cancelled once cancelled.
    later = (
        await api.post("/jobs/email", json={"to": "ada@example.com", "subject": "s", "body": "b", "delay": 3_600_000})
    ).json()["jobId"]
    await stats_until(api, lambda b: n(b, "email", "delayed") >= n(before, "email", "delayed") + 1, "the delayed email")
    assert (await api.post(f"/jobs/{later}/cancel")).status_code == 202
    # An email that is sent, and a cleanup job.
    sent = (await api.post("/jobs/email", json={"to": "ada@example.com", "subject": "s", "body": "b"})).json()["jobId"]
    cleanup = (await api.post("/jobs/cleanup", json={"task": "delete_temp"})).json()["jobId"]
    assert (await until_final(api, sent))["status"] == "completed"
    assert (await until_final(api, cleanup))["status"] == "completed"
    assert (await until_final(api, later))["status"] == "cancelled"
    await stats_until(
        api,
        lambda b: (
            n(b, "email", "cancelled") >= n(before, "email", "cancelled") + 1
            and n(b, "email", "completed") >= n(before, "email", "completed") + 1
            and n(b, "cleanup", "completed") >= n(before, "cleanup", "completed") + 1
            and n(b, "email", "delayed") <= n(before, "email", "delayed")
        ),
        "the cancelled email, the sent email and the cleanup",
    )


async def test_processing_counts_exactly_the_sends_in_flight(api):
    """Held at the receiver: two first attempts (local activities inside the workflow task) and a
    second attempt (an activity, after a 503). They count `processing` while held, and no longer once
    answered; a job still waiting out its delay does not."""
    release = threading.Event()
    with (
        HttpReceiver([Answer(200, {"ok": True}, hold=release)]) as held,
        HttpReceiver([Answer(503), Answer(200, {"ok": True}, hold=release)]) as retried,
    ):
        try:
            before = await stats(api)
            base = n(before, "webhook", "processing")
            jobs = [
                (await api.post("/notify/webhook", json={"url": url, "data": {"n": i}, **options})).json()[
                    "notificationId"
                ]
                for i, (url, options) in enumerate(
                    [
                        (held.url, {}),
                        (held.url, {}),
                        (retried.url, {"backoff": {"type": "fixed", "delay": 100}}),
                        (held.url, {"delay": 3_600_000}),
                    ]
                )
            ]
            await held.until_received(2, timeout_s=DEADLINE_S)
            await retried.until_received(2, timeout_s=DEADLINE_S)
            for job_id in jobs[:3]:
                assert (await api.get(f"/jobs/{job_id}/status")).json()["status"] == "processing"
            during = await stats_until(
                api, lambda b: n(b, "webhook", "processing") == base + 3, "the three held sends as processing"
            )
            assert "approximate" not in during
            assert n(during, "webhook", "delayed") >= 1
            # Exactly those: still three a moment later (nothing else counts, nothing double counts).
            await asyncio.sleep(0.5)
            assert n(await stats(api), "webhook", "processing") == base + 3
        finally:
            release.set()
        for job_id in jobs[:3]:
            assert (await until_final(api, job_id))["status"] == "completed"
        assert (await api.post(f"/jobs/{jobs[3]}/cancel")).status_code == 202
    await stats_until(api, lambda b: n(b, "webhook", "processing") == base, "no send in flight")


async def test_a_dead_letter_counts_as_failed_until_redriven_and_once_per_job(api):
    with HttpReceiver([Answer(404), Answer(200, {"ok": True})]) as receiver:
        before = await stats(api)
        job_id = await failed_webhook(api, receiver.url)
        await listed(api, job_id)
        failed = await stats_until(
            api,
            lambda b: n(b, "webhook", "failed") >= n(before, "webhook", "failed") + 1 and b["dlq"] >= before["dlq"] + 1,
            "the failed webhook",
        )
        assert (await api.post(f"/admin/dlq/{job_id}/retry", headers=ADMIN)).status_code == 202
        assert (await until_final(api, job_id))["status"] == "completed"
    # The job now counts once, as completed: its failed run is history, not a failure.
    await listed(api, job_id, present=False)
    await stats_until(
        api,
        lambda b: (
            n(b, "webhook", "failed") == n(failed, "webhook", "failed") - 1
            and n(b, "webhook", "completed") >= n(failed, "webhook", "completed") + 1
            and b["dlq"] == failed["dlq"] - 1
        ),
        "the redriven webhook as completed",
    )


async def test_a_discarded_dead_letter_leaves_the_dlq_but_stays_failed(api):
    with HttpReceiver([Answer(400)]) as receiver:
        job_id = await failed_webhook(api, receiver.url)
    await listed(api, job_id)
    before = await stats_until(api, lambda b: True, "")
    listed_before = len(await all_dead_letters(api))
    assert (await api.delete(f"/admin/dlq/{job_id}", headers=ADMIN)).status_code == 200
    await listed(api, job_id, present=False)
    after = await stats_until(api, lambda b: b["dlq"] <= before["dlq"] - 1, "the discard")
    # The job still reads failed on the status routes, so it still counts as failed (once).
    assert n(after, "webhook", "failed") >= n(before, "webhook", "failed")
    assert (await api.get(f"/jobs/{job_id}/status")).json()["status"] == "failed"
    assert listed_before >= 1


async def test_dlq_is_what_the_dlq_route_lists(api):
    with HttpReceiver([Answer(410)]) as receiver:
        await failed_webhook(api, receiver.url)
    end = time.monotonic() + DEADLINE_S
    while True:
        # Read the list on both sides of the stats: equal when nothing moved in between.
        first = len(await all_dead_letters(api))
        body = await stats(api)
        second = len(await all_dead_letters(api))
        if first == second == body["dlq"]:
            break
        assert time.monotonic() < end, f"stats say {body['dlq']} dead letters, GET /admin/dlq lists {first}/{second}"
        await asyncio.sleep(0.2)
    assert body["dlq"] >= 1


async def test_recent_jobs_are_the_latest_runs_newest_first(api):
    with HttpReceiver([Answer(404), Answer(200)]) as receiver:
        redriven = await failed_webhook(api, receiver.url)
        await listed(api, redriven)
        assert (await api.post(f"/admin/dlq/{redriven}/retry", headers=ADMIN)).status_code == 202
        assert (await until_final(api, redriven))["status"] == "completed"
    waiting = (
        await api.post("/jobs/sms", json={"phone": "+14155550123", "message": "later", "delay": 3_600_000})
    ).json()["jobId"]

    async def latest() -> list[dict]:
        response = await api.get("/admin/jobs", params={"limit": 50}, headers=ADMIN)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    end = time.monotonic() + DEADLINE_S
    while True:
        items = await latest()
        ids = [item["jobId"] for item in items]
        mine = {item["jobId"]: item for item in items if item["jobId"] in (redriven, waiting)}
        if len(mine) == 2 and mine[redriven]["status"] == "completed":
            break
        assert time.monotonic() < end, f"never listed both: {items}"
        await asyncio.sleep(0.2)
    assert len(ids) == len(set(ids)), "one item per job id"
    assert ids.index(waiting) < ids.index(redriven), "newest first"
    assert mine[waiting]["status"] == "delayed" and mine[waiting]["type"] == "sms"
    assert "finishedAt" not in mine[waiting] and mine[redriven]["finishedAt"]
    assert set(mine[redriven]) == {"jobId", "runId", "type", "status", "createdAt", "finishedAt", "tenant"}
    only_sms = (await api.get("/admin/jobs", params={"type": "sms", "limit": 5}, headers=ADMIN)).json()["items"]
    assert only_sms and {item["type"] for item in only_sms} == {"sms"}
    assert (await api.post(f"/jobs/{waiting}/cancel")).status_code == 202
    assert_error(await api.get("/admin/jobs", params={"limit": 0}, headers=ADMIN), 400, "validation_error")
    assert_error(await api.get("/admin/jobs", params={"type": "fax"}, headers=ADMIN), 400, "validation_error")


async def test_answers_match_the_published_schema(api, anon):

    spec = (await anon.get("/openapi.json")).json()
    check_schema(spec, await api.get("/admin/stats", headers=ADMIN), "get", "/admin/stats")
    check_schema(spec, await api.get("/admin/jobs", headers=ADMIN), "get", "/admin/jobs")


@pytest.mark.parametrize("path", ["/admin/stats", "/admin/jobs"])
async def test_stats_take_the_admin_token(anon, path):
    refused = assert_error(await anon.get(path), 401, "unauthorized")
    assert refused
    assert (await anon.get(path)).headers["www-authenticate"].startswith("Basic ")
    assert_error(await anon.get(path, headers=AUTH), 403, "forbidden")
    assert_error(await anon.get(path, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")


@pytest.mark.parametrize(
    ("herald_status", "execution", "word"),
    [
        ("queued", "Running", "queued"),
        ("delayed", "Running", "delayed"),
        ("completed", "Running", "completed"),  # its result callback is still being delivered
        ("completed", "Completed", "completed"),
        ("failed", "Failed", "failed"),
        ("cancelled", "Canceled", "cancelled"),
        ("queued", "Terminated", "failed"),
        ("delayed", "TimedOut", "failed"),
        ("queued", "Canceled", "cancelled"),
        ("queued", "ContinuedAsNew", None),
    ],
)
def test_how_visibility_maps_onto_the_status_words(herald_status, execution, word):
    assert status_word(herald_status, execution) == word
