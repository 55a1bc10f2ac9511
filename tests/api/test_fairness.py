"""Fair dispatch between tenants, and the per-tenant cap, on the server `make run` starts (docs/tenants.md).

The dev server runs from `server_command` (devstack/temporal_server.py), the very command line `make run`
uses: a SQLite file, the tuned dynamic config (matching.enableFairness) and one partition per task queue
(Temporal applies weights and caps per partition: docs/tenants.md). The jobs are accepted through the
API while no email worker polls, so they wait in Temporal as a backlog; then the email worker starts and
the SMTP sink's arrival order (or times) is what Temporal handed out. Every job's tasks carry its tenant
as their fairness key (common/jobs.py); the weights and the cap are set on the queues by the workers
(common/task_queue_config.py).

- A backlog of 300 of tenant A's emails, then one of tenant B's: B's goes out within the first 30% of the
  deliveries (2nd to 50th unloaded; first in, first out it would go out 301st). One send slot, two
  workflow-task slots (the fewest it takes), so the worker holds at most two jobs at a time, as in
  tests/api/test_priority.py.
- Weights acme=3, globex=1, 200 emails each (acme's queued first): while both have a backlog, acme gets
  3 of every 4 sends (0.70 to 0.80 of the first 120; 0.75 measured).
- HERALD_TENANT_RATE_LIMIT=5 with 200 of A's emails and 20 of B's: A's are held to the cap (at most 1.2 x
  on average, before and after its first 2 s; at most 4.5 x in any one second: the server's 1 s burst per
  partition, see docs/tenants.md), counted by when the server dispatched each send (its history), while B's
  all go out while most of A's still wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from api.core.intake import intake_worker
from api.main import create_app
from common.models import TASK_QUEUES
from common.settings import Settings
from common.task_queue_config import configure_job_queues
from common.temporal import client_for
from tests.api.helpers import NAMESPACE, api_client, make_run_server
from worker import build_workers

KEYS = {"acme": "key-acme", "globex": "key-globex"}
POST_CONCURRENCY = 20
# A bound that only stops a hang: the cap test's globex took up to 39 s under a full parallel suite.
SEND_TIMEOUT_S = 90


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with make_run_server(tmp_path) as address:
        yield address


def two_tenants(settings: Settings, address: str, **changes: object) -> Settings:
    return settings.model_copy(
        update={"temporal_address": address, "api_keys": [f"{t}={k}" for t, k in KEYS.items()], **changes}
    )


def auth(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


@contextlib.asynccontextmanager
async def stack(settings: Settings, address: str) -> AsyncIterator[tuple[httpx.AsyncClient, contextlib.AsyncExitStack]]:
    """The API (in process) and every worker but the email one, which `start_email_worker` starts; the
    job queues configured as a worker configures them at start."""
    client = client_for(await Client.connect(address, namespace=NAMESPACE), settings)
    await configure_job_queues(client, settings)
    workers = {w.task_queue: w for w in [*build_workers(client, settings), intake_worker(client)]}
    email_worker = workers.pop(TASK_QUEUES["email"])
    async with contextlib.AsyncExitStack() as running:
        for worker in workers.values():
            await running.enter_async_context(worker)
        api = await running.enter_async_context(api_client(create_app(settings)))
        api.email_worker = email_worker  # type: ignore[attr-defined]
        api.temporal = client  # type: ignore[attr-defined]
        yield api, running


async def post_emails(api: httpx.AsyncClient, tenant: str, count: int, label: str) -> list[str]:
    """`count` emails of `tenant`, POSTed concurrently; their job ids."""
    gate = asyncio.Semaphore(POST_CONCURRENCY)

    async def one(n: int) -> str:
        async with gate:
            response = await api.post(
                "/jobs/email",
                json={"to": f"{tenant}@example.com", "subject": f"{label} {n}", "body": "fairness test"},
                headers=auth(tenant),
            )
            assert response.status_code == 202, response.text
            return str(response.json()["jobId"])

    return list(await asyncio.gather(*(one(n) for n in range(count))))


def messages(outbox: Path) -> Iterator[tuple[int, str]]:
    """(arrival ns, Message-ID) of every message at the sink, in the order it received them."""
    for path in sorted(outbox.glob("*.eml")):
        message_id = next(
            (
                line.split(b":", 1)[1].strip().decode()
                for line in path.read_bytes().splitlines()
                if line.lower().startswith(b"message-id:")
            ),
            "",
        )
        yield int(path.name.split("-", 1)[0]), message_id


def message_ids(outbox: Path) -> set[str]:
    return {message_id for _, message_id in messages(outbox)}


def arrivals(outbox: Path, ids: dict[str, str]) -> list[tuple[int, str]]:
    """(arrival ns, tenant) of `ids`' messages (Message-ID → tenant), in the order the sink received them."""
    return [(ns, ids[message_id]) for ns, message_id in messages(outbox) if message_id in ids]


async def dispatched_at(client: Client, job_id: str) -> int:
    """When the server handed the job's (first) send activity to a worker, in ns: its ActivityTaskStarted
    time, which the server records at dispatch even where it writes the event at the attempt's end."""
    async for event in client.get_workflow_handle(job_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            return int(event.event_time.ToNanoseconds())
    raise AssertionError(f"{job_id} has no activity started: its send did not go through the task queue")


async def wait_for(outbox: Path, ids: dict[str, str], done: object) -> list[tuple[int, str]]:
    deadline = time.monotonic() + SEND_TIMEOUT_S
    while True:
        order = arrivals(outbox, ids)
        if done(order):  # type: ignore[operator]
            return order
        assert time.monotonic() < deadline, f"not sent within {SEND_TIMEOUT_S} s: {len(order)} of {len(ids)}"
        await asyncio.sleep(0.1)


def by_message_id(tenant: str, job_ids: list[str]) -> dict[str, str]:
    return {f"<{job_id}@herald>": tenant for job_id in job_ids}


BACKLOG = 300


async def test_one_email_of_tenant_b_overtakes_a_backlog_of_300_of_tenant_a(settings, smtp_sink, server):
    one_slot = two_tenants(settings, server, email_concurrency=1, worker_max_concurrent_workflow_tasks=2)
    async with stack(one_slot, server) as (api, running):
        backlog = await post_emails(api, "acme", BACKLOG, "backlog")
        [urgent] = await post_emails(api, "globex", 1, "other tenant")
        await running.enter_async_context(api.email_worker)  # type: ignore[attr-defined]
        ids = by_message_id("acme", backlog) | by_message_id("globex", [urgent])
        order = await wait_for(smtp_sink.outbox, ids, lambda got: "globex" in {t for _, t in got})
    position = [t for _, t in order].index("globex") + 1
    print(f"tenant B's email went out {position} of {BACKLOG + 1}")
    # Measured 2nd to 50th unloaded, up to 82nd on a loaded 2-core machine (first in, first out: 301st).
    assert position <= BACKLOG * 30 // 100, f"tenant B's email went out {position} of {BACKLOG + 1}"


SHARE_BACKLOG = 200
SHARE_COUNTED = 120


async def test_weights_3_to_1_give_a_3_to_1_share_of_sends(settings, smtp_sink, server):
    weighted = two_tenants(
        settings,
        server,
        email_concurrency=1,
        worker_max_concurrent_workflow_tasks=2,
        tenant_weights={"acme": 3.0, "globex": 1.0},
    )
    async with stack(weighted, server) as (api, running):
        # acme's first: first in, first out would send all of them before any of globex's.
        acme = await post_emails(api, "acme", SHARE_BACKLOG, "weighted")
        globex = await post_emails(api, "globex", SHARE_BACKLOG, "weighted")
        await running.enter_async_context(api.email_worker)  # type: ignore[attr-defined]
        ids = by_message_id("acme", acme) | by_message_id("globex", globex)
        order = await wait_for(smtp_sink.outbox, ids, lambda got: len(got) >= SHARE_COUNTED)
    counted = [t for _, t in order[:SHARE_COUNTED]]
    share = counted.count("acme") / len(counted)
    print(f"acme's share of the first {SHARE_COUNTED} sends: {share:.2f}")
    # Both still have a backlog throughout (acme has sent at most 120 of its 200). On one partition per queue
    # it was 0.75 in every run (on Temporal's default 4: 0.65 to 0.85).
    assert 0.70 <= share <= 0.80, f"acme's share of the first {SHARE_COUNTED} sends: {share:.2f} (3:1 is 0.75)"


CAP = 5.0
CAPPED, FREE = 200, 20


async def test_the_tenant_cap_holds_one_tenant_without_slowing_the_other(settings, smtp_sink, server):
    capped = two_tenants(settings, server, email_concurrency=20, tenant_rate_limit=CAP)
    async with stack(capped, server) as (api, running):
        acme = await post_emails(api, "acme", CAPPED, "capped")
        globex = await post_emails(api, "globex", FREE, "not capped")
        start = time.time_ns()
        await running.enter_async_context(api.email_worker)  # type: ignore[attr-defined]
        ids = by_message_id("acme", acme) | by_message_id("globex", globex)
        order = await wait_for(smtp_sink.outbox, ids, lambda got: [t for _, t in got].count("globex") == FREE)
        # Some more seconds of acme's, to measure its rate over a longer window.
        await asyncio.sleep(15)
        order = arrivals(smtp_sink.outbox, ids)
        # When the server handed each of acme's sends to the worker (its ActivityTaskStarted time): the
        # cap is the server's, and the sink's arrival times also carry the worker's own stalls (on a
        # loaded machine this in-process worker once sat 4 s on its 20 fetched tasks, then sent 27 in 1 s).
        arrived = message_ids(smtp_sink.outbox)
        sent_acme = [job_id for job_id in acme if f"<{job_id}@herald>" in arrived]
        acme_times = sorted(await asyncio.gather(*(dispatched_at(api.temporal, job_id) for job_id in sent_acme)))  # type: ignore[attr-defined]
    globex_done = (max(ns for ns, t in order if t == "globex") - start) / 1e9
    acme_by_then = sum(1 for ns, t in order if t == "acme" and ns - start <= globex_done * 1e9)
    print(f"globex: all {FREE} sent {globex_done:.1f} s after the worker started; acme had sent {acme_by_then}")
    # Not held back by acme's backlog: globex's emails are all out while most of acme's still wait.
    # The measure is relative (acme's share sent by then); the bound in seconds only stops a hang: on a
    # quiet machine globex is out in 5-6 s, under a full parallel suite it took up to 39 s.
    assert globex_done <= 90, f"globex's {FREE} emails took {globex_done:.1f} s"
    assert acme_by_then <= CAPPED // 2, f"acme had sent {acme_by_then} of {CAPPED} before globex's {FREE} were out"
    most_in_1s = max(sum(1 for u in acme_times if t <= u < t + 1e9) for t in acme_times)
    span = (acme_times[-1] - acme_times[0]) / 1e9
    rate = (len(acme_times) - 1) / span if span else float("inf")
    # After the first 2 s (the burst): the steady rate.
    steady_from = acme_times[0] + 2e9
    steady = [ns for ns in acme_times if ns >= steady_from]
    steady_rate = len(steady) / ((acme_times[-1] - steady_from) / 1e9) if len(steady) > 1 else 0.0
    first = acme_times[0]
    print(
        "acme dispatched per second:",
        [sum(1 for u in acme_times if first + k * 1e9 <= u < first + (k + 1) * 1e9) for k in range(25)],
    )
    print(
        f"acme: {len(acme_times)} sends over {span:.1f} s ({rate:.1f}/s; {steady_rate:.1f}/s after its first 2 s), "
        f"at most {most_in_1s} in 1 s"
    )
    assert len(acme_times) < CAPPED, "acme's backlog went out whole: no cap"
    # Measured 3.1/s to 3.8/s over ~20 s, at most 12 to 17 in 1 s, since the cap's worker runs no eager
    # activities (docs/tenants.md; with them: 4.9/s to 9.4/s, up to 25 in 1 s).
    assert rate <= CAP * 1.2, f"acme sent {rate:.1f}/s, capped at {CAP}/s"
    assert steady_rate <= CAP * 1.2, f"acme sent {steady_rate:.1f}/s after its first 2 s, capped at {CAP}/s"
    assert most_in_1s <= CAP * 4.5, f"acme sent {most_in_1s} in 1 s, capped at {CAP}/s"
    assert span >= 10, f"acme's sends spanned only {span:.1f} s"
