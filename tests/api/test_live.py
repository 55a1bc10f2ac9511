"""Live status end to end: GET /jobs/{id}/events (Server-Sent Events) and GET /jobs/{id}/status?wait=N.

A stream stays open while its job runs, which httpx's in-process ASGI transport cannot show (it
hands back an answer only once it is complete), so these tests serve the API with uvicorn on a
thread of its own and talk to it over a real socket, against the session's dev server and workers.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import httpx
import pytest

from api.core.metrics import REGISTRY
from api.jobs.live import Live
from api.main import create_app
from common.metrics import LIVE_JOBS, LIVE_VIEWERS
from tests.api.helpers import (
    AUTH,
    LIVE,
    ThreadedServer,
    address_of,
    assert_error,
    collapsed,
    open_stream,
    read_stream,
    sse_events,
    start_dev_server,
)
from tests.support.http_receiver import Answer
from tests.support.temporal import free_port

FINAL = {"completed", "failed", "cancelled"}
# "At once" or "after the 1 s wait", as opposed to "after the 60 s wait": far from both, so a loaded
# machine's slow answer is not taken for a wait that was not kept.
SOON_S = 20


async def eventually(condition, what: str, timeout_s: float = 20) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, f"no {what} within {timeout_s} s"
        await asyncio.sleep(0.05)


@pytest.fixture
def watch_opened(monkeypatch):
    """Awaitable: the served API has opened a watch of the job (a long poll holds the job's state and
    waits on its history from there), so a change made now is one the long poll must answer."""
    opened: set[str] = set()
    lock = threading.Lock()  # the served app runs on a thread of its own
    original = Live.watch

    async def watch(self: Live, job_id: str, tenant):
        found = await original(self, job_id, tenant)
        with lock:
            opened.add(job_id)
        return found

    monkeypatch.setattr(Live, "watch", watch)

    async def until(job_id: str) -> None:
        await eventually(lambda: job_id in opened, f"watch of {job_id}")

    return until


async def _job(client: httpx.AsyncClient, path: str, body: dict) -> str:
    response = await client.post(path, json=body)
    assert response.status_code == 202, response.text
    return response.json()["jobId"]


# ---- Server-Sent Events ---------------------------------------------------------------------
async def test_a_job_with_one_retry_streams_each_state_once_and_closes(live, sms_gateway):
    phone = "+14155550301"
    sms_gateway.script(phone, [Answer(500, {"error": "down"}), Answer(200, {"id": "live-1"})])
    held = sms_gateway.hold(phone)  # the first attempt stays in flight until the stream has seen it
    job_id = await _job(
        live, "/jobs/sms", {"phone": phone, "message": "live", "backoff": {"type": "fixed", "delay": 1500}}
    )
    async with live.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        stream = open_stream(response)
        await asyncio.wait_for(read_stream(stream, lambda s: "processing" in s.statuses), 20)
        held.set()
        await asyncio.wait_for(read_stream(stream), 20)

    assert stream.closed
    assert {e["event"] for e in stream.events} == {"status"}
    words = collapsed(stream.statuses)
    assert words in (
        ["processing", "delayed", "processing", "completed"],
        ["queued", "processing", "delayed", "processing", "completed"],
    ), stream.statuses
    # One event per change: no event repeats the one before it.
    ids = [e["id"] for e in stream.events]
    assert all(a != b for a, b in itertools.pairwise(ids)), stream.events
    delayed = next(e["data"] for e in stream.events if e["data"]["status"] == "delayed")
    assert delayed["attempts"] == 1 and "HTTP 500" in delayed["error"] and delayed["nextAttemptAt"]
    # Each event's data is exactly the status answer, and its id the answer's ETag.
    last = stream.events[-1]
    answer = await live.get(f"/jobs/{job_id}/status")
    assert last["data"] == answer.json()
    assert answer.headers["etag"] == f'"{last["id"]}"'
    assert last["data"]["attempts"] == 2 and last["data"]["result"]["providerId"] == "live-1"


async def test_retries_on_the_server_are_seen_without_a_history_event(live, sms_gateway):
    # Every backoff is the run's own timer with the state in its memo (a job accepted before that: one
    # activity's retries, whose backoff writes no event): either way the stream sees each.
    phone = "+14155550302"
    sms_gateway.script(phone, [Answer(500), Answer(500), Answer(200)])
    job_id = await _job(
        live, "/jobs/sms", {"phone": phone, "message": "live", "backoff": {"type": "fixed", "delay": 1500}}
    )
    stream = await sse_events(live, job_id)
    assert stream.closed and stream.statuses[-1] == "completed", stream.statuses
    delays = [e["data"] for e in stream.events if e["data"]["status"] == "delayed"]
    assert [d["attempts"] for d in delays][:1] == [1] and 2 in [d["attempts"] for d in delays], stream.statuses
    second = next(d for d in delays if d["attempts"] == 2)
    assert [x["attempt"] for x in second["deliveries"]] == [1, 2]  # the attempt log the backoff carries
    words = collapsed(stream.statuses)
    assert words[-1] == "completed" and words.count("delayed") == 2, words


async def test_a_delayed_job_streams_delayed_keeps_alive_and_ends_cancelled(live):
    job_id = await _job(live, "/jobs/email", {"to": "ada@example.com", "subject": "s", "body": "b", "delay": 600000})
    async with live.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        stream = open_stream(response)
        await asyncio.wait_for(read_stream(stream, lambda s: bool(s.events)), 10)
        first = stream.events[0]["data"]
        assert first["status"] == "delayed" and first["nextAttemptAt"], first
        reader = asyncio.create_task(read_stream(stream))
        # Idle: a heartbeat every 0.5 s, and no event.
        await eventually(lambda: stream.comments.count("keep-alive") >= 2, "two keep-alives")
        assert len(stream.events) == 1, stream
        assert (await live.post(f"/jobs/{job_id}/cancel")).status_code == 202
        await asyncio.wait_for(reader, 10)
    assert stream.closed and stream.statuses == ["delayed", "cancelled"]


async def test_a_finished_job_streams_its_final_state_and_a_reconnect_after_it_gets_204(live):
    job_id = await _job(live, "/jobs/cleanup", {"task": "expire_sessions"})
    final = None
    for _ in range(100):
        final = await sse_events(live, job_id)
        if final.statuses == ["completed"]:
            break
        await asyncio.sleep(0.1)
    assert final.closed and final.statuses == ["completed"], final
    # An EventSource reconnects after the stream closes, naming the last event it got: 204 stops it.
    again = await live.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": final.events[-1]["id"]})
    assert again.status_code == 204 and again.content == b""
    # Any other last event: the current state again.
    other = await live.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": "0123456789abcdef"})
    assert other.status_code == 200 and other.text.startswith("event: status\n")


async def test_an_unknown_job_is_404_before_any_stream(live, anon):
    for url in ("/jobs/no-such-job/events", "/jobs/no-such-job/status?wait=5", f"/jobs/{'x' * 300}/events"):
        response = await live.get(url)
        assert_error(response, 404, "not_found")
    assert_error(await anon.get("/jobs/no-such-job/events"), 401, "unauthorized")


# ---- long polls -----------------------------------------------------------------------------
async def test_a_long_poll_answers_at_the_first_change(live, watch_opened):
    job_id = await _job(live, "/jobs/email", {"to": "ada@example.com", "subject": "s", "body": "b", "delay": 600000})
    seen = await live.get(f"/jobs/{job_id}/status")
    assert seen.json()["status"] == "delayed"
    etag = seen.headers["etag"]

    started = time.monotonic()
    waiting = asyncio.create_task(live.get(f"/jobs/{job_id}/status", params={"wait": 60, "since": etag}))
    await watch_opened(job_id)
    assert (await live.post(f"/jobs/{job_id}/cancel")).status_code == 202
    answer = await waiting
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled", answer.text
    assert answer.headers["etag"] != etag
    assert time.monotonic() - started < SOON_S  # at the change, not after the 60 s


async def test_a_long_poll_without_since_waits_for_the_first_change_after_the_request(live, watch_opened):
    job_id = await _job(live, "/jobs/email", {"to": "ada@example.com", "subject": "s", "body": "b", "delay": 600000})
    started = time.monotonic()
    waiting = asyncio.create_task(live.get(f"/jobs/{job_id}/status?wait=60"))
    await watch_opened(job_id)  # it holds the state at the request (delayed): the cancel is a change after it
    await live.post(f"/jobs/{job_id}/cancel")
    answer = await waiting
    assert answer.json()["status"] == "cancelled" and time.monotonic() - started < SOON_S


async def test_a_long_poll_answers_after_n_seconds_when_nothing_changes(live, live_app):
    job_id = await _job(live, "/jobs/email", {"to": "ada@example.com", "subject": "s", "body": "b", "delay": 600000})
    seen = await live.get(f"/jobs/{job_id}/status")
    etag = seen.headers["etag"]

    started = time.monotonic()
    same = await live.get(f"/jobs/{job_id}/status", params={"wait": 1, "since": etag.strip('"')})
    took = time.monotonic() - started
    assert same.status_code == 200 and same.json() == seen.json() and same.headers["etag"] == etag
    assert 1.0 <= took < SOON_S, took
    # The next long poll of this job takes the history up where this one left it.
    assert live_app.state.live.marks.get(job_id) is not None

    # With If-None-Match, "still the same" is a 304 without a body.
    started = time.monotonic()
    unchanged = await live.get(f"/jobs/{job_id}/status?wait=1", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
    assert 1.0 <= time.monotonic() - started < SOON_S
    # A state the client has not seen answers at once (not after the 60 s).
    started = time.monotonic()
    other = await live.get(f"/jobs/{job_id}/status", params={"wait": 60, "since": "0123456789abcdef"})
    assert other.status_code == 200 and other.json() == seen.json() and time.monotonic() - started < SOON_S
    await live.post(f"/jobs/{job_id}/cancel")


async def test_etag_and_if_none_match_on_a_plain_read(api):
    job_id = (
        await api.post("/jobs/email", json={"to": "ada@example.com", "subject": "s", "body": "b", "delay": 600000})
    ).json()["jobId"]
    first = await api.get(f"/jobs/{job_id}/status")
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert (await api.get(f"/jobs/{job_id}/status")).headers["etag"] == etag  # stable while nothing changes
    not_modified = await api.get(f"/jobs/{job_id}/status", headers={"If-None-Match": f'W/{etag}, "abc"'})
    assert not_modified.status_code == 304 and not_modified.content == b""
    await api.post(f"/jobs/{job_id}/cancel")
    cancelled = await api.get(f"/jobs/{job_id}/status?wait=10", headers={"If-None-Match": etag})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


@pytest.mark.parametrize("query", ["wait=61", "wait=-1", "wait=soon", "wait=5&since=2024-01-01T00:00:00Z"])
async def test_a_bad_wait_or_since_is_a_400_naming_it(api, query):
    body = assert_error(await api.get(f"/jobs/any-job/status?{query}"), 400, "validation_error")
    name = query.rsplit("&", 1)[-1].split("=")[0]
    assert [d["field"].rsplit(".", 1)[-1] for d in body["details"]] == [name], body


# ---- the bound on open streams ----------------------------------------------------------------
async def test_every_viewer_of_a_job_shares_one_watch_and_sees_each_change(settings, workers, monkeypatch):
    """30 streams and 10 long polls on each of three jobs: three watches (one history long poll per
    job, not per viewer), and every viewer gets the job's change; once all have gone, none is left."""
    opened: list[str] = []
    original = Live.watch

    async def counted(self: Live, job_id: str, tenant):
        opened.append(job_id)
        return await original(self, job_id, tenant)

    monkeypatch.setattr(Live, "watch", counted)
    app = create_app(settings.model_copy(update={**LIVE, "max_live_streams": 200}))
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    with ThreadedServer(app) as server:
        url = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60, limits=limits) as client:
            body = {"to": "ada@example.com", "subject": "s", "body": "b", "delay": 600000}
            jobs = [await _job(client, "/jobs/email", body) for _ in range(3)]
            before = gauges()
            etags = {j: (await client.get(f"/jobs/{j}/status")).headers["etag"] for j in jobs}

            async def stream(job_id: str, ready: asyncio.Event) -> list[str]:
                async with client.stream("GET", f"/jobs/{job_id}/events") as response:
                    seen = open_stream(response)
                    await read_stream(seen, lambda s: bool(s.events))
                    ready.set()
                    await read_stream(seen)
                    return seen.statuses

            readies = {j: [asyncio.Event() for _ in range(30)] for j in jobs}
            streams = [asyncio.create_task(stream(j, r)) for j in jobs for r in readies[j]]
            polls = [
                asyncio.create_task(client.get(f"/jobs/{j}/status", params={"wait": 60, "since": etags[j]}))
                for j in jobs
                for _ in range(10)
            ]
            for event in itertools.chain(*readies.values()):
                await asyncio.wait_for(event.wait(), 30)
            live = app.state.live
            await eventually(lambda: sum(f.viewers for f in live.feeds.values()) == 120, "120 viewers")
            assert sorted(opened) == sorted(jobs) and len(live.feeds) == 3  # one watch per job
            # The gauges, as /metrics serves them (the process's other apps may have viewers of their own).
            assert gauges() == (before[0] + 3, before[1] + 120)
            for job_id in jobs:
                assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 202
            statuses = await asyncio.wait_for(asyncio.gather(*streams), 30)
            answers = await asyncio.wait_for(asyncio.gather(*polls), 30)
    assert all(s == ["delayed", "cancelled"] for s in statuses), statuses
    assert all(a.status_code == 200 and a.json()["status"] == "cancelled" for a in answers)
    assert live.feeds == {} and sorted(opened) == sorted(jobs) and gauges() == before


def gauges() -> tuple[float | None, float | None]:
    return tuple(REGISTRY.get_sample_value(name) for name in (LIVE_JOBS, LIVE_VIEWERS))  # type: ignore[return-value]


async def test_streams_over_the_bound_are_refused_with_retry_after(settings, workers):
    with ThreadedServer(create_app(settings.model_copy(update={**LIVE, "max_live_streams": 1}))) as server:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers=AUTH, timeout=30) as client:
            job_id = await _job(
                client, "/jobs/email", {"to": "ada@example.com", "subject": "s", "body": "b", "delay": 600000}
            )
            async with client.stream("GET", f"/jobs/{job_id}/events") as held:
                assert held.status_code == 200
                for url in (f"/jobs/{job_id}/events", f"/jobs/{job_id}/status?wait=5"):
                    refused = await client.get(url)
                    assert_error(refused, 503, "too_many_streams")
                    assert int(refused.headers["retry-after"]) > 0
                # A plain read takes no slot.
                assert (await client.get(f"/jobs/{job_id}/status")).status_code == 200
            # The client hung up: its slot is free again (as soon as the server has noticed).
            for _ in range(50):
                again = await client.get(f"/jobs/{job_id}/status?wait=0.2")
                if again.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert again.status_code == 200, again.text
            await client.post(f"/jobs/{job_id}/cancel")


async def test_a_long_poll_on_a_finished_job_waits_out_n_seconds(live):
    job_id = await _job(live, "/jobs/cleanup", {"task": "expire_sessions"})
    done = await live.get(f"/jobs/{job_id}/status?wait=10")  # queued or processing → at its first change
    for _ in range(100):
        if done.json()["status"] == "completed":
            break
        done = await live.get(f"/jobs/{job_id}/status", params={"wait": 10, "since": done.headers["etag"]})
    assert done.json()["status"] == "completed", done.text
    started = time.monotonic()
    same = await live.get(f"/jobs/{job_id}/status", params={"wait": 1, "since": done.headers["etag"]})
    assert same.status_code == 200 and same.json() == done.json() and 1.0 <= time.monotonic() - started < SOON_S


# ---- Temporal away --------------------------------------------------------------------------
async def test_live_routes_are_503_while_temporal_is_unreachable(make_app):
    with ThreadedServer(make_app(temporal_address=f"127.0.0.1:{free_port()}")) as server:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers=AUTH, timeout=30) as client:
            for url in ("/jobs/email-123/events", "/jobs/email-123/status?wait=5"):
                response = await client.get(url)
                assert_error(response, 503, "temporal_unavailable")
                assert int(response.headers["retry-after"]) > 0


async def test_a_stream_whose_temporal_goes_away_ends_with_an_error_event(settings):
    env = await start_dev_server()
    try:
        app = create_app(settings.model_copy(update={**LIVE, "temporal_address": address_of(env)}))
        with ThreadedServer(app) as server:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{server.port}", headers=AUTH, timeout=30
            ) as client:
                # No worker here: the job reads `delayed` from what the API wrote when starting it.
                job_id = await _job(
                    client, "/jobs/email", {"to": "ada@example.com", "subject": "s", "body": "b", "delay": 600000}
                )
                async with client.stream("GET", f"/jobs/{job_id}/events") as response:
                    stream = open_stream(response)
                    await asyncio.wait_for(read_stream(stream, lambda s: bool(s.events)), 10)
                    assert stream.statuses == ["delayed"]
                    await env.shutdown()
                    env = None
                    await asyncio.wait_for(read_stream(stream), 30)
        assert stream.closed
        error = stream.events[-1]
        assert error["event"] == "error" and error["data"]["error"] == "temporal_unavailable", stream.events
        assert set(error["data"]) == {"error", "message", "details"}
    finally:
        if env is not None:
            await env.shutdown()
