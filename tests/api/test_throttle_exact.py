"""The SMS throttle is exact and counts every send (docs/api.md, Throttling), with real processes as
test_intake.py starts them: a dev server of its own, `python -m api` replicas (each with its intake
worker serving the quota workflows) and `python -m worker`, HERALD_SMS_PER_HOUR at its default 10.

- 30 SMS to one number at once, spread over two replicas: exactly 10 are 202, the rest 429 with
  Retry-After, and the gateway gets exactly those 10.
- A redrive and a schedule's run were not counted at intake: when the number's hour is full they
  wait, `delayed` with `nextAttemptAt` when a slot frees, nothing sent (tests/workflows/
  test_throttle_wait.py skips the hour and sees them sent then).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.api.helpers import (
    ADMIN,
    ADMIN_TOKEN,
    AUTH,
    FINAL,
    SMS_TOKEN,
    ScriptedGateway,
    ThreadedServer,
    address_of,
    assert_error,
    dev_server,
    poll,
    process_environment,
)
from tests.support.http_receiver import Answer
from tests.support.processes import fetch_when_served, kill_now, start_logged, until_logged
from tests.support.temporal import free_port

SMS_PER_HOUR = 10  # the default, which process_environment sets
REQUESTS = 30
HOUR_S = 3600
# After the last job is final: a late duplicate would have arrived by now.
SETTLE_S = 2


@contextlib.asynccontextmanager
async def _stack(tmp_path: Path, replicas: int) -> AsyncIterator[tuple[ScriptedGateway, list[httpx.AsyncClient]]]:
    """A dev server, `replicas` API processes and a worker, all sending SMS to one scripted gateway."""
    gateway = ScriptedGateway(tmp_path / "sms", SMS_TOKEN)
    with ThreadedServer(gateway) as server:
        async with dev_server() as env:
            ports = [free_port() for _ in range(replicas)]
            url = f"http://127.0.0.1:{server.port}/messages"
            processes = []
            try:
                for n, port in enumerate(ports):
                    environment = process_environment(address_of(env), tmp_path / "data", free_port(), url, port)
                    environment["HERALD_ADMIN_TOKEN"] = ADMIN_TOKEN
                    processes.append(start_logged("api", environment, tmp_path / f"api-{n}.log"))
                worker = start_logged("worker", environment, tmp_path / "worker.log")
                processes.append(worker)
                for port, process in zip(ports, processes):
                    await asyncio.to_thread(
                        fetch_when_served, f"http://127.0.0.1:{port}/readyz", process, "an API replica", 60
                    )
                await until_logged(worker, tmp_path / "worker.log", "worker polling")
                async with contextlib.AsyncExitStack() as clients:
                    apis = [
                        await clients.enter_async_context(
                            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=30)
                        )
                        for port in ports
                    ]
                    yield gateway, apis
            finally:
                for process in processes:
                    kill_now(process)


async def _final(api: httpx.AsyncClient, job_id: str) -> dict:
    return await poll(api, f"/jobs/{job_id}/status", lambda b: b["status"] in FINAL, deadline_s=60)


def _job_id(answer: httpx.Response) -> str:
    body = answer.json()
    return body.get("notificationId") or body["jobId"]


async def test_thirty_sms_over_two_replicas_are_exactly_the_hours_limit(tmp_path):
    phone = "+14155550191"
    async with _stack(tmp_path, replicas=2) as (gateway, replicas):
        body = {"phone": phone, "message": "exact"}
        routes = ["/notify/sms", "/jobs/sms"]
        started = time.monotonic()
        answers = await asyncio.gather(*(replicas[n % 2].post(routes[n // 2 % 2], json=body) for n in range(REQUESTS)))
        took = time.monotonic() - started
        accepted = [a for a in answers if a.status_code == 202]
        refused = [a for a in answers if a.status_code != 202]
        assert len(accepted) == SMS_PER_HOUR, ([a.status_code for a in answers], took)
        assert len(refused) == REQUESTS - SMS_PER_HOUR
        for answer in refused:
            assert_error(answer, 429, "rate_limited")
            assert HOUR_S - 100 <= int(answer.headers["Retry-After"]) <= HOUR_S, answer.headers
        ids = [_job_id(a) for a in accepted]
        for job_id in ids:
            assert (await _final(replicas[0], job_id))["status"] == "completed"
        await asyncio.sleep(SETTLE_S)
        sent = gateway.recorded()
        assert sorted(m["idempotencyKey"] for m in sent) == sorted(ids)
        assert {m["to"] for m in sent} == {phone}


async def _waits_for_a_slot(api: httpx.AsyncClient, job_id: str) -> dict:
    # (`processing` while its run asks the quota.)
    status = await poll(api, f"/jobs/{job_id}/status", lambda b: b["status"] in {"delayed", *FINAL}, deadline_s=30)
    assert status["status"] == "delayed", status
    frees_in = (datetime.fromisoformat(status["nextAttemptAt"]) - datetime.now(UTC)).total_seconds()
    # The hour's first slot (the dead letter's, taken at its intake) frees an hour after it was taken.
    assert HOUR_S - 120 <= frees_in <= HOUR_S, status
    return status


async def test_a_redrive_and_a_scheduled_run_wait_for_a_slot_when_the_hour_is_full(tmp_path):
    phone = "+14155550192"
    async with _stack(tmp_path, replicas=1) as (gateway, [api]):
        # The first SMS fails for good (a dead letter), the others go out: together the hour's 10.
        gateway.script(phone, [Answer(400, {"error": "bad number"}), Answer(200, {"id": "sent"})])
        sms = {"phone": phone, "message": "hour"}
        failed = (await api.post("/jobs/sms", json=sms | {"attempts": 1})).json()["jobId"]
        assert (await _final(api, failed))["status"] == "failed"
        for _ in range(SMS_PER_HOUR - 1):
            answer = await api.post("/jobs/sms", json=sms)
            assert answer.status_code == 202, answer.text
            assert (await _final(api, answer.json()["jobId"]))["status"] == "completed"
        assert_error(await api.post("/jobs/sms", json=sms), 429, "rate_limited")
        assert len(gateway.calls_to(phone)) == SMS_PER_HOUR

        redriven = await api.post(f"/admin/dlq/{failed}/retry", headers=ADMIN)
        assert redriven.status_code == 202, redriven.text
        await _waits_for_a_slot(api, failed)

        created = await api.post("/schedules", json={"cron": "0 0 1 1 *", "job": {"type": "sms"} | sms})
        assert created.status_code == 201, created.text
        schedule_id = created.json()["scheduleId"]
        scheduled = (await api.post(f"/admin/schedules/{schedule_id}/trigger", headers=ADMIN)).json()["lastJobId"]
        await _waits_for_a_slot(api, scheduled)

        # Waiting, not sent, and cancellable as any delayed job.
        await asyncio.sleep(SETTLE_S)
        assert len(gateway.calls_to(phone)) == SMS_PER_HOUR
        for job_id in (failed, scheduled):
            assert (await api.post(f"/jobs/{job_id}/cancel")).status_code == 202
            assert (await _final(api, job_id))["status"] == "cancelled"
        assert len(gateway.calls_to(phone)) == SMS_PER_HOUR
