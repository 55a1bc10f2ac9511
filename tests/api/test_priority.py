"""Priority on the server `make run` starts: a priority-1 email overtakes a backlog of 300.

The dev server runs from `server_command` (devstack/temporal_server.py), the very command line
`make run` uses: a SQLite file, the tuned dynamic config and one partition per task queue, so this
test follows `make run` if its flags change; and once more with Temporal's default 4 partitions per
queue, as a cluster has them, where priority holds within each partition only (docs/delivery.md).

300 normal-priority emails are accepted while no email worker polls, then a password reset
(`POST /notifications`, priority 1) and an email with `priority: 1`. Then the email worker starts
with one send slot (HERALD_EMAIL_CONCURRENCY=1) and two workflow-task slots (the fewest it takes),
so it holds at most two jobs at a time and the SMTP sink's arrival order is the order in which
Temporal handed the jobs out. First in, first out, both urgent emails would go out last (276th
and 302nd when tried without priority).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from api.core.intake import intake_worker
from api.main import create_app
from common.models import TASK_QUEUES
from common.temporal import client_for
from devstack.smtp_sink import read_outbox
from devstack.temporal_server import TASK_QUEUE_PARTITIONS
from tests.api.helpers import AUTH, NAMESPACE, api_client, make_run_server, notify, put_user
from worker import build_workers

BACKLOG = 300
POST_CONCURRENCY = 20
SEND_TIMEOUT_S = 30
# A cluster's queues: Temporal's default partitions per task queue.
CLUSTER_PARTITIONS = 4
# The latest arrival allowed to each urgent email, of 302. Measured on a loaded 2-core machine
# (load 4 to 10, 14 runs): with one partition (make run) 1st to 3rd (the backlog's first email went
# out before an urgent one in about half the runs); with 4 partitions 1st to 12th, as Temporal orders
# by priority within a partition only (docs/delivery.md).
ALLOWED = {"make run": 4, "4 partitions": BACKLOG // 10}


@pytest.fixture(params=["make run", "4 partitions"])
def server(request, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The dev server as `make run` starts it (or with a cluster's 4 partitions per queue), on a SQLite
    file of its own; the configuration's name and the server's address."""
    partitions = CLUSTER_PARTITIONS if request.param == "4 partitions" else TASK_QUEUE_PARTITIONS
    with make_run_server(tmp_path, partitions) as address:
        yield request.param, address


async def test_a_priority_1_email_overtakes_a_backlog_of_300(settings, smtp_sink, server):
    configuration, address = server
    one_slot = settings.model_copy(
        update={"temporal_address": address, "email_concurrency": 1, "worker_max_concurrent_workflow_tasks": 2}
    )
    client = client_for(await Client.connect(address, namespace=NAMESPACE), one_slot)
    # As tests/support/temporal.py's running_workers: an app served over ASGI has no intake worker.
    workers = {w.task_queue: w for w in [*build_workers(client, one_slot), intake_worker(client)]}
    email_worker = workers.pop(TASK_QUEUES["email"])
    async with contextlib.AsyncExitStack() as running:
        # Every queue but email's: the user a typed notification needs lives on the maintenance one.
        for worker in workers.values():
            await running.enter_async_context(worker)
        api = await running.enter_async_context(api_client(create_app(one_slot), headers=AUTH))
        user_id = await put_user(api)
        backlog = await post_backlog(api)
        urgent = [
            await notify(
                api, type="password-reset", userId=user_id, data={"resetUrl": "https://app.example.com/reset?t=1"}
            ),
            await post_email(api, "urgent", priority=1),
        ]
        await running.enter_async_context(email_worker)
        ids = {f"<{job_id}@herald>": job_id for job_id in [*backlog, *urgent]}
        order = await arrivals(smtp_sink.outbox, ids, until=set(urgent))
    assert len(set(order)) == len(order), "an email was sent twice"
    positions = [order.index(job_id) + 1 for job_id in urgent]
    allowed = ALLOWED[configuration]
    assert max(positions) <= allowed, f"the urgent emails went out {positions} of {len(ids)}; allowed: {allowed}"


async def post_email(api: httpx.AsyncClient, subject: str, **options: object) -> str:
    response = await api.post(
        "/jobs/email", json={"to": "backlog@example.com", "subject": subject, "body": "priority test"} | options
    )
    assert response.status_code == 202, response.text
    return str(response.json()["jobId"])


async def post_backlog(api: httpx.AsyncClient) -> list[str]:
    """BACKLOG normal-priority emails, POSTed concurrently; their job ids."""
    gate = asyncio.Semaphore(POST_CONCURRENCY)

    async def one(n: int) -> str:
        async with gate:
            return await post_email(api, f"backlog {n}")

    return list(await asyncio.gather(*(one(n) for n in range(BACKLOG))))


async def arrivals(outbox: Path, ids: dict[str, str], until: set[str]) -> list[str]:
    """The job ids of `ids`' messages in the order the sink received them, once those in `until` are there."""
    deadline = time.monotonic() + SEND_TIMEOUT_S
    while True:
        order = [ids[m["Message-ID"]] for m in read_outbox(outbox) if m["Message-ID"] in ids]
        if until <= set(order):
            return order
        assert time.monotonic() < deadline, f"not sent within {SEND_TIMEOUT_S} s: {until - set(order)}"
        await asyncio.sleep(0.1)
