"""Intake needs only the API and Temporal (docs/api.md): with no job worker at all, every POST that
accepts a job answers at once (202, or 429 once an SMS number's hour is used up), with and without an
`Idempotency-Key`; the jobs run when a worker comes. And a POST retried after its answer was lost
makes one job: its id comes from the Idempotency-Key, so the retry finds what the first try started.

The first test runs real processes: a dev server of its own (no worker polls any of its queues), the
API as deployed (`python -m api`, so with its lifespan and its intake worker), then `python -m worker`.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid

import httpx
import pytest
from temporalio.service import RPCError, RPCStatusCode

from api.batches import routes as batch_routes
from api.core.idempotency import KeyStore
from api.jobs import starter
from devstack import sms_sink
from devstack.smtp_sink import SmtpSink
from tests.api.helpers import (
    AUTH,
    FINAL,
    SMS_TOKEN,
    ThreadedServer,
    address_of,
    api_client,
    assert_error,
    dev_server,
    mail_for,
    poll,
    process_environment,
    until_final,
)
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.processes import fetch_when_served, kill_now, start_logged, until_logged
from tests.support.temporal import free_port
from workflows.batch_chunks import ChunkedBatchWorkflow

# What a POST may take with no worker anywhere: an answer now, not a 10 s wait for a worker's task.
INTAKE_S = 1.0
SMS_PER_HOUR = 10
PHONE = "+14155550190"
WORKER_START_S = 60
JOBS_RUN_S = 60


def _email(n: int) -> dict:
    return {"to": f"intake-{n}@example.com", "subject": f"Intake {n}", "body": "b"}


async def test_every_intake_answers_at_once_with_no_worker_and_the_jobs_run_when_one_comes(tmp_path):
    data = tmp_path / "data"
    api_port = free_port()
    with (
        SmtpSink(tmp_path / "outbox", port=free_port()) as smtp,
        ThreadedServer(sms_sink.create_app(tmp_path / "sms", SMS_TOKEN)) as sms,
        HttpReceiver([Answer(200)]) as hooks,
    ):
        async with dev_server() as env:
            environment = process_environment(
                address_of(env), data, smtp.port, f"http://127.0.0.1:{sms.port}/messages", api_port
            )
            api_process = start_logged("api", environment, tmp_path / "api.log")
            worker: subprocess.Popen | None = None
            try:
                # Ready only once its intake worker polls (api/core/intake.py).
                await asyncio.to_thread(
                    fetch_when_served, f"http://127.0.0.1:{api_port}/readyz", api_process, "the API", 60
                )
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", headers=AUTH, timeout=30) as api:
                    accepted, took = await _intake_without_a_worker(api, hooks.url)
                    assert max(took.values()) < INTAKE_S, took
                    worker = start_logged("worker", environment, tmp_path / "worker.log")
                    await until_logged(worker, tmp_path / "worker.log", "worker polling", WORKER_START_S)
                    # One at a time: a batch item's status is a query of its batch's run.
                    finals = [await _final(api, job_id) for job_id in accepted]
            finally:
                for process in (worker, api_process):
                    if process is not None:
                        kill_now(process)
        states = dict(zip(accepted, finals))
        for job_id, what in accepted.items():
            if what in ("email", "sms", "webhook", "cleanup", "report"):
                assert states[job_id] == "completed", (job_id, what, states[job_id])
            if what == "email":
                assert len(mail_for(smtp.outbox, job_id)) == 1, job_id
        sent = [m["idempotencyKey"] for m in sms_sink.SmsStore(tmp_path / "sms").all()]
        sms_jobs = [job_id for job_id, what in accepted.items() if what == "sms"]
        assert sorted(sent) == sorted(sms_jobs)
        assert len(hooks.received) == sum(1 for what in accepted.values() if what == "webhook")


async def _intake_without_a_worker(api: httpx.AsyncClient, hook_url: str) -> tuple[dict[str, str], dict[str, float]]:
    """Every intake route, once without and once with an Idempotency-Key; then the SMS hour full.
    The accepted jobs (job id -> what it sends) and how long each POST took."""
    accepted: dict[str, str] = {}
    took: dict[str, float] = {}
    sms = {"phone": PHONE, "message": "code 123456"}
    posts = [
        ("/jobs/email", _email(1), "email"),
        ("/jobs/sms", sms, "sms"),
        ("/jobs/cleanup", {"task": "delete_temp"}, "cleanup"),
        ("/notify/email", _email(2), "email"),
        ("/notify/sms", sms, "sms"),
        ("/notify/webhook", {"url": hook_url + "/hook", "data": {"n": 1}}, "webhook"),
        # No such user: accepted all the same (the user is read at send time), then failed.
        ("/notifications", {"type": "welcome", "userId": f"nobody-{uuid.uuid4().hex[:8]}"}, "typed"),
        ("/notify/batch", {"channel": "email", "items": [_email(3), _email(4)]}, "email"),
        ("/notify/batch", {"channel": "sms", "items": [sms]}, "sms"),
        ("/reports", {"userId": f"user-{uuid.uuid4().hex[:8]}", "reportType": "notification-history"}, "report"),
    ]
    for keyed in (False, True):
        for n, (path, body, what) in enumerate(posts):
            if path == "/reports":  # one per userId and reportType at a time: another user for the keyed one
                body = {**body, "userId": f"{body['userId']}-{keyed}"}
            headers = {"Idempotency-Key": f"intake-{n}-{uuid.uuid4().hex}"} if keyed else {}
            started = time.monotonic()
            response = await api.post(path, json=body, headers=headers)
            took[f"{path} keyed={keyed} #{n}"] = time.monotonic() - started
            assert response.status_code == 202, (path, keyed, response.text)
            answer = response.json()
            for job_id in answer.get("jobIds") or [answer.get("jobId") or answer["notificationId"]]:
                accepted[job_id] = what
    # 2 x 3 SMS to PHONE so far; fill the hour, then one more is refused at once, with Retry-After.
    used = sum(1 for what in accepted.values() if what == "sms")
    for n in range(SMS_PER_HOUR - used):
        response = await api.post("/notify/sms", json=sms, headers={"Idempotency-Key": f"fill-{n}"} if n % 2 else {})
        assert response.status_code == 202, response.text
        accepted[response.json()["notificationId"]] = "sms"
    for headers in ({}, {"Idempotency-Key": f"over-{uuid.uuid4().hex}"}):
        started = time.monotonic()
        response = await api.post("/jobs/sms", json=sms, headers=headers)
        took[f"429 {headers}"] = time.monotonic() - started
        assert_error(response, 429, "rate_limited")
        assert int(response.headers["retry-after"]) > 0
    return accepted, took


async def _final(api: httpx.AsyncClient, job_id: str) -> str:
    body = await poll(api, f"/jobs/{job_id}/status", lambda b: b["status"] in FINAL, deadline_s=JOBS_RUN_S)
    return body["status"]


# ---- retried POSTs make one job ------------------------------------------------------------------
def _lose_the_answer_of_the_first_start(monkeypatch, module, name: str) -> list[str]:
    """The first start through `module.name` reaches Temporal, but its caller hears UNAVAILABLE (as when
    the connection drops after the server took it): the API answers 503. Returns the started ids."""
    real = getattr(module, name)
    started: list[str] = []

    async def start_then_lose(client, request, *args, **kwargs):
        result = await real(client, request, *args, **kwargs)
        started.append(request.job.job_id)
        if len(started) == 1:
            raise RPCError("connection lost after the start", RPCStatusCode.UNAVAILABLE, b"")
        return result

    monkeypatch.setattr(module, name, start_then_lose)
    return started


@pytest.mark.parametrize("route", ["/jobs/email", "/notify/email"])
async def test_a_post_retried_after_a_lost_answer_finds_the_first_job(api, smtp_sink, monkeypatch, route):
    started = _lose_the_answer_of_the_first_start(monkeypatch, starter, "start_job")
    body = _email(uuid.uuid4().int % 10_000)
    headers = {"Idempotency-Key": f"lost-{uuid.uuid4().hex}"}
    first = await api.post(route, json=body, headers=headers)
    assert_error(first, 503, "temporal_unavailable")  # the client never learns the job's id
    again = await api.post(route, json=body, headers=headers)
    assert again.status_code == 202, again.text
    job_id = again.json().get("jobId") or again.json()["notificationId"]
    assert started == [job_id]  # the first try's job, and no second start
    assert (await until_final(api, job_id))["status"] == "completed"
    assert len(mail_for(smtp_sink.outbox, job_id)) == 1
    # And from now on the key replays that answer.
    replayed = await api.post(route, json=body, headers=headers)
    assert replayed.json() == again.json() and replayed.headers["Idempotency-Replayed"] == "true"


async def test_an_sms_retried_after_a_lost_answer_is_one_job_and_one_slot(make_app, workers, sms_gateway, monkeypatch):
    started = _lose_the_answer_of_the_first_start(monkeypatch, starter, "start_job")
    phone = f"+1415555{uuid.uuid4().int % 10_000:04d}"
    body = {"phone": phone, "message": "code 654321"}
    headers = {"Idempotency-Key": f"lost-sms-{uuid.uuid4().hex}"}
    async with api_client(make_app(sms_per_hour=1), headers=AUTH) as one_an_hour:
        assert_error(await one_an_hour.post("/jobs/sms", json=body, headers=headers), 503, "temporal_unavailable")
        again = await one_an_hour.post("/jobs/sms", json=body, headers=headers)
        assert again.status_code == 202, again.text
        job_id = again.json()["jobId"]
        assert started == [job_id]
        # The first try's slot stayed counted (its job exists), and the retry took none.
        other = await one_an_hour.post("/jobs/sms", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert_error(other, 429, "rate_limited")
        assert (await until_final(one_an_hour, job_id))["status"] == "completed"
    assert [c.idempotency_key for c in sms_gateway.calls_to(phone)] == [job_id]


async def test_a_batch_retried_after_a_lost_answer_is_the_first_batch(api, smtp_sink, monkeypatch):
    started = _lose_the_answer_of_the_first_start(monkeypatch, batch_routes, "start_batch")
    body = {"channel": "email", "items": [_email(5), _email(6)]}
    headers = {"Idempotency-Key": f"lost-batch-{uuid.uuid4().hex}"}
    assert_error(await api.post("/notify/batch", json=body, headers=headers), 503, "temporal_unavailable")
    again = await api.post("/notify/batch", json=body, headers=headers)
    assert again.status_code == 202, again.text
    batch_id = again.json()["batchId"]
    assert started == [batch_id]
    await poll(api, f"/batches/{batch_id}", lambda b: b["done"])
    for job_id in again.json()["jobIds"]:
        assert len(mail_for(smtp_sink.outbox, job_id)) == 1


class _ApiStoppingBeforeTheBatchRun:
    """A client whose start of a chunked batch's own run never reaches Temporal: as if the API stopped
    after starting the chunks, which then hold (workflows/batch_chunks.py)."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    async def start_workflow(self, workflow, *args, **kwargs):
        if workflow == ChunkedBatchWorkflow.run:
            raise RPCError("the API stopped before the batch's run", RPCStatusCode.UNAVAILABLE, b"")
        return await self._client.start_workflow(workflow, *args, **kwargs)


async def test_a_chunked_batch_retried_after_its_chunks_alone_started_sends_each_item_once(
    make_app, workers, smtp_sink, monkeypatch
):
    real = batch_routes.start_batch
    tries: list[str] = []

    async def stopping_the_first_time(client, batch, *args):
        tries.append(batch.job.job_id)
        return await real(_ApiStoppingBeforeTheBatchRun(client) if len(tries) == 1 else client, batch, *args)

    monkeypatch.setattr(batch_routes, "start_batch", stopping_the_first_time)
    body = {"channel": "email", "items": [_email(7), _email(8), _email(9)]}
    headers = {"Idempotency-Key": f"lost-chunks-{uuid.uuid4().hex}"}
    async with api_client(make_app(batch_chunk_items=2), headers=AUTH) as api:
        assert_error(await api.post("/notify/batch", json=body, headers=headers), 503, "temporal_unavailable")
        again = await api.post("/notify/batch", json=body, headers=headers)
        assert again.status_code == 202, again.text
        batch_id = again.json()["batchId"]
        assert tries == [batch_id, batch_id]  # the same batch (and so the same chunks) both times
        done = await poll(api, f"/batches/{batch_id}", lambda b: b["done"], deadline_s=JOBS_RUN_S)
    assert done["counts"]["success"] == 3 and done["total"] == 3
    for job_id in again.json()["jobIds"]:
        assert len(mail_for(smtp_sink.outbox, job_id)) == 1


async def test_an_answer_the_key_never_stored_is_found_again_after_the_lease(make_app, workers, smtp_sink, monkeypatch):
    """The first try started its job and answered, but the key's record never got the answer (its
    process died, or Temporal dropped the signal) and the client lost it: once the lease ends, the retry
    runs again, and finds the first job."""
    real = KeyStore.complete
    dropped: list[str] = []

    async def drop_the_first(self, done):
        if not dropped:
            dropped.append(done.request_id)
            return
        await real(self, done)

    monkeypatch.setattr(KeyStore, "complete", drop_the_first)
    body = _email(7)
    headers = {"Idempotency-Key": f"unstored-{uuid.uuid4().hex}"}
    async with api_client(make_app(idempotency_lease_seconds=1), headers=AUTH) as api:
        first = await api.post("/jobs/email", json=body, headers=headers)
        assert first.status_code == 202 and dropped, first.text
        again = await api.post("/jobs/email", json=body, headers=headers)
        assert again.status_code == 202, again.text
        assert again.json() == first.json()
        assert (await until_final(api, first.json()["jobId"]))["status"] == "completed"
    assert len(mail_for(smtp_sink.outbox, first.json()["jobId"])) == 1
