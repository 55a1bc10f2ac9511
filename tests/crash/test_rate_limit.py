"""HERALD_EMAIL_RATE_LIMIT across two worker processes (`python -m worker`, as deployed), with every
kind of send: singles through the API (some greylisted once, so retried), a batch, a `then` chain, a
schedule's run and a dead letter's redrive. The SMTP sink stamps each message's arrival (and each
refusal's): no window at the sink holds more than the limit allows, and every email arrives once.

The limit is Temporal's task-queue rate limit, enforced by the server's matching service across the
workers, per task-queue partition (one here, as `make run` and docker-compose run; a cluster's queues
have 4 by default, each limiting its share): each partition's
limiter lets a burst of about one second's worth through at once. So the documented allowance
(docs/delivery.md, "Rate limits"): in any 1 s window at most limit x 2 + partitions sends, and in any
5 s window at most limit x 5 + limit + partitions (the average holds). The API gets no rate limit at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from activities.email import message_id
from common.models import then_id
from common.settings import Settings
from common.temporal import client_for
from devstack.smtp_sink import SmtpSink, read_outbox
from devstack.temporal_server import TASK_QUEUE_PARTITIONS
from tests.api.helpers import dev_server
from tests.crash.conftest import worker_environment
from tests.crash.helpers import final
from tests.replay.record_cleanup import scheduled_run
from tests.support.temporal import free_port

RATE = 5
PARTITIONS = TASK_QUEUE_PARTITIONS
ONE_SECOND_MOST = RATE * 2 + PARTITIONS
FIVE_SECONDS_MOST = RATE * 5 + RATE + PARTITIONS
ADMIN_TOKEN = "rate-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SINGLES = 56  # 4 of them greylisted: refused once, sent by their second attempt
GREYLISTED = 4
BATCH_ITEMS = 40
# + a `then` chain (2 emails), a schedule's run (1), a redriven dead letter (1): 100 in all.
TOTAL = SINGLES + BATCH_ITEMS + 2 + 1 + 1


@pytest_asyncio.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of this test's own: a task queue's rate limit is the server's, per queue."""
    async with dev_server() as env:
        yield env


@pytest.fixture
def sink(tmp_path) -> Iterator[SmtpSink]:
    with SmtpSink(tmp_path / "outbox", port=free_port()) as sink:
        yield sink


@pytest.fixture
def settings(dev_env, tmp_path, receiver, sink) -> Settings:
    """The API's settings: the workers' environment without the rate limit (the API needs none), in dev
    mode so that it accepts the sink's greylist.test addresses."""
    env = worker_environment(
        dev_env,
        tmp_path / "data",
        receiver,
        HERALD_SMTP_PORT=str(sink.port),
        HERALD_ADMIN_TOKEN=ADMIN_TOKEN,
        HERALD_DEV_MODE="true",
    )
    return Settings(**{k.removeprefix("HERALD_").lower(): v for k, v in env.items() if k.startswith("HERALD_")})


def email(to: str, **options) -> dict:
    return {"to": to, "subject": f"To {to}", "body": "Rate-limited hello", **options}


def busiest(arrivals: list[float], window: float) -> int:
    """The most arrivals in any window of `window` seconds (each window starting at an arrival)."""
    arrivals = sorted(arrivals)
    most, end = 0, 0
    for start, at in enumerate(arrivals):
        while end < len(arrivals) and arrivals[end] < at + window:
            end += 1
        most = max(most, end - start)
    return most


async def test_every_send_keeps_the_rate_limit_across_two_workers(api, settings, sink, start_worker, dev_env):
    assert settings.email_rate_limit is None
    for _ in range(2):
        start_worker(HERALD_SMTP_PORT=str(sink.port), HERALD_EMAIL_RATE_LIMIT=str(RATE))
    began = time.monotonic()

    # A dead letter first (its one attempt greylisted), redriven once it failed: its second try gets through.
    dead = (await api.post("/jobs/email", json=email("dead@greylist.test", attempts=1))).json()["jobId"]
    # A schedule's run (triggered now), a `then` chain, the batch and the singles, all at once.
    schedule = await api.post(
        "/schedules", json={"cron": "0 3 1 1 *", "job": {"type": "email", **email("s@example.com")}}
    )
    assert schedule.status_code == 201, schedule.text
    client = client_for(dev_env.client, settings)
    scheduled = await scheduled_run(client, schedule.json()["scheduleId"])
    parent = (
        await api.post(
            "/jobs/email", json=email("parent@example.com", then={"type": "email", **email("next@example.com")})
        )
    ).json()["jobId"]
    batch = await api.post(
        "/notify/batch", json={"channel": "email", "items": [email(f"item{n}@example.com") for n in range(BATCH_ITEMS)]}
    )
    assert batch.status_code == 202, batch.text
    retry_fast = {"attempts": 3, "backoff": {"type": "fixed", "delay": 500}}
    singles = await asyncio.gather(
        *(
            api.post(
                "/jobs/email",
                json=email(f"grey{n}@greylist.test" if n < GREYLISTED else f"one{n}@example.com", **retry_fast),
            )
            for n in range(SINGLES)
        )
    )
    assert all(a.status_code == 202 for a in singles), [a.text for a in singles if a.status_code != 202]
    single_ids = [a.json()["jobId"] for a in singles]

    assert (await final(api, dead, timeout=60))["status"] == "failed"
    assert (await api.post(f"/admin/dlq/{dead}/retry", headers=ADMIN)).status_code == 202

    batch_ids = batch.json()["jobIds"]
    waited = [*single_ids, *batch_ids, parent, then_id(parent), scheduled, dead]
    states = {job_id: await final(api, job_id, timeout=90) for job_id in waited}
    elapsed = time.monotonic() - began
    assert {s["status"] for s in states.values()} == {"completed"}, [
        (i, s["status"], s["error"]) for i, s in states.items() if s["status"] != "completed"
    ]
    # The greylisted singles took two attempts (the refused one counted), every other send one: no
    # declined local try and no declined slice was counted as an attempt.
    assert [states[i]["attempts"] for i in single_ids] == [2] * GREYLISTED + [1] * (SINGLES - GREYLISTED)
    assert all(states[i]["attempts"] == 1 for i in [*batch_ids, parent, then_id(parent), scheduled])
    assert states[dead]["attempts"] == 1  # the redrive's run: its job again from the start

    # All 100 arrived, each once, under its own job's Message-ID.
    mails = read_outbox(sink.outbox)
    assert sorted(m["Message-ID"] for m in mails) == sorted(message_id(i) for i in waited)
    assert len(mails) == TOTAL == 100

    # At the sink: every send that reached it, accepted or refused, by its arrival time.
    arrivals = [int(p.name.split("-")[0]) / 1e9 for p in sink.outbox.glob("*.eml")]
    arrivals += [at / 1e9 for at, _, _ in sink.handler.refusals]
    assert len(sink.handler.refusals) == GREYLISTED + 1
    one, five = busiest(arrivals, 1.0), busiest(arrivals, 5.0)
    span = max(arrivals) - min(arrivals)
    print(
        f"rate {RATE}/s: {len(arrivals)} sends in {span:.1f} s ({elapsed:.1f} s in all), busiest 1 s {one}, 5 s {five}"
    )
    assert one <= ONE_SECOND_MOST, (one, ONE_SECOND_MOST)
    assert five <= FIVE_SECONDS_MOST, (five, FIVE_SECONDS_MOST)
    # And the limit was what paced them: 105 sends at 5/s cannot all go out much sooner than 20 s.
    assert span >= (len(arrivals) - RATE * 2 - PARTITIONS) / RATE
