"""The SMS throttle is exact across API replicas (docs/api.md, Throttling): 30 SMS to one number at
once, spread over two `python -m api` processes on one dev server, are exactly HERALD_SMS_PER_HOUR
202s and 429s with Retry-After for the rest, and the SMS sink gets exactly that many messages.

Real processes, as test_intake.py starts them: a dev server of its own, two API replicas (each with
its intake worker serving the quota workflows) and one job worker.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from devstack import sms_sink
from tests.api.helpers import AUTH, FINAL, SMS_TOKEN, ThreadedServer, address_of, assert_error, dev_server, poll
from tests.api.test_intake import _environment, _polling, _start, _stop
from tests.support.processes import fetch_when_served
from tests.support.temporal import free_port

SMS_PER_HOUR = 10  # the default, which _environment sets
REQUESTS = 30
PHONE = "+14155550191"
# After the last job is final: a late duplicate would have arrived by now.
SETTLE_S = 2


async def test_thirty_sms_over_two_replicas_are_exactly_the_hours_limit(tmp_path):
    with ThreadedServer(sms_sink.create_app(tmp_path / "sms", SMS_TOKEN)) as sms:
        async with dev_server() as env:
            ports = [free_port(), free_port()]
            url = f"http://127.0.0.1:{sms.port}/messages"
            processes = []
            try:
                for n, port in enumerate(ports):
                    environment = _environment(address_of(env), tmp_path / "data", free_port(), url, port)
                    processes.append(_start("api", environment, tmp_path / f"api-{n}.log"))
                worker = _start("worker", environment, tmp_path / "worker.log")
                processes.append(worker)
                for port, process in zip(ports, processes):
                    await asyncio.to_thread(
                        fetch_when_served, f"http://127.0.0.1:{port}/readyz", process, "an API replica", 60
                    )
                await _polling(worker, tmp_path / "worker.log")
                replicas = [
                    httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=30) for port in ports
                ]
                try:
                    body = {"phone": PHONE, "message": "exact"}
                    routes = ["/notify/sms", "/jobs/sms"]
                    started = time.monotonic()
                    answers = await asyncio.gather(
                        *(replicas[n % 2].post(routes[n // 2 % 2], json=body) for n in range(REQUESTS))
                    )
                    took = time.monotonic() - started
                    accepted = [a for a in answers if a.status_code == 202]
                    refused = [a for a in answers if a.status_code != 202]
                    assert len(accepted) == SMS_PER_HOUR, ([a.status_code for a in answers], took)
                    assert len(refused) == REQUESTS - SMS_PER_HOUR
                    for answer in refused:
                        assert_error(answer, 429, "rate_limited")
                        assert 3500 <= int(answer.headers["Retry-After"]) <= 3600, answer.headers
                    ids = [a.json().get("notificationId") or a.json()["jobId"] for a in accepted]
                    for job_id in ids:
                        final = await poll(
                            replicas[0], f"/jobs/{job_id}/status", lambda b: b["status"] in FINAL, deadline_s=60
                        )
                        assert final["status"] == "completed", final
                finally:
                    for replica in replicas:
                        await replica.aclose()
            finally:
                for process in processes:
                    _stop(process)
        await asyncio.sleep(SETTLE_S)
        sent = sms_sink.SmsStore(tmp_path / "sms").all()
        assert sorted(m["idempotencyKey"] for m in sent) == sorted(ids)
        assert {m["to"] for m in sent} == {PHONE}
