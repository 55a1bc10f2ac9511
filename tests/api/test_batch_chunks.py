"""Batches larger than one run (workflows/batch_chunks.py) end to end: ten thousand items in one POST,
delivered once each and counted right throughout; a chunked batch read, streamed, cancelled and
dead-lettered item by item like any batch; its one signed `batch.completed` callback; its histories
small at any size."""

from __future__ import annotations

import json
import uuid

import httpx
from standardwebhooks.webhooks import Webhook
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest

from api.main import create_app
from devstack.smtp_sink import SmtpSink, read_outbox
from tests.api.helpers import API_KEY, AUTH, address_of, api_client, assert_error, dev_server, poll, sse_events
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import WEBHOOK_SECRET, free_port, local_settings, running_workers

WORDS = ("queued", "processing", "success", "failed", "cancelled", "suppressed")


async def _accepted(api: httpx.AsyncClient, body: dict) -> dict:
    response = await api.post("/notify/batch", json=body)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["jobIds"] == [f"{accepted['batchId']}-{n}" for n in range(len(body["items"]))]
    return accepted


async def _until_done(api: httpx.AsyncClient, batch_id: str, total: int, deadline_s: float = 60) -> dict:
    """The batch once done; every answer on the way adds up to its total."""

    def done(batch: dict) -> bool:
        assert set(batch["counts"]) == set(WORDS) and sum(batch["counts"].values()) == total, batch
        return batch["done"]

    return await poll(api, f"/batches/{batch_id}", done, deadline_s=deadline_s)


async def _history(client, workflow_id: str) -> list:
    events, token = [], b""
    while True:
        page = await client.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(
                namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id), next_page_token=token
            )
        )
        events += page.history.events
        if not (token := page.next_page_token):
            return events


async def test_ten_thousand_emails_in_one_request_each_delivered_once(tmp_path):
    """On a dev server, a worker and an SMTP sink of its own: the session's outbox stays small."""
    with SmtpSink(tmp_path / "outbox", port=free_port()) as sink:
        async with dev_server() as env:
            settings = local_settings(
                tmp_path, temporal_address=address_of(env), api_keys=[API_KEY], smtp_port=sink.port
            )
            assert settings.max_batch_items == 10_000  # the default
            items = [
                {"to": f"many{n}@example.com", "subject": "Ten thousand", "body": f"item {n}"} for n in range(10_000)
            ]
            body = json.dumps({"channel": "email", "items": items})
            assert len(body) > settings.max_body_bytes  # the batch route's own limit lets it in
            async with running_workers(env.client, settings), api_client(create_app(settings), headers=AUTH) as api:
                # As a client is told to (docs/api.md): a 503 (Temporal slow to answer on a loaded machine)
                # is asked again with the same Idempotency-Key, which finds what the first try started.
                headers = {"Content-Type": "application/json", "Idempotency-Key": f"ten-thousand-{uuid.uuid4()}"}
                for _ in range(3):
                    response = await api.post("/notify/batch", content=body, headers=headers)
                    if response.status_code != 503:
                        break
                assert response.status_code == 202, response.text
                accepted = response.json()
                batch_id = accepted["batchId"]
                assert len(accepted["jobIds"]) == 10_000 and accepted["jobIds"][9_999] == f"{batch_id}-9999"
                batch = await _until_done(api, batch_id, 10_000, deadline_s=240)
                assert batch["counts"] == {
                    "queued": 0,
                    "processing": 0,
                    "success": 10_000,
                    "failed": 0,
                    "cancelled": 0,
                    "suppressed": 0,
                }
                status = (await api.get(f"/jobs/{batch_id}-7777/status")).json()
                assert status["status"] == "completed" and status["attempts"] == 1, status
            # Each item once: one message per job id.
            sent = [mail["Message-ID"] for mail in read_outbox(sink.outbox)]
            assert sorted(sent) == sorted(f"<{job_id}@herald>" for job_id in accepted["jobIds"])
            # The batch's run holds two signals per chunk; each chunk's history is that of a batch of 1,000.
            parent = await _history(env.client, batch_id)
            assert len(parent) < 100 and sum(e.ByteSize() for e in parent) < 64 * 1024, len(parent)
            chunk = await _history(env.client, f"{batch_id}-chunk9")
            assert len(chunk) < 300 and sum(e.ByteSize() for e in chunk) < 2 * 1024 * 1024, len(chunk)


async def test_a_chunked_batch_reads_streams_and_dead_letters_item_by_item(make_app, workers):
    with HttpReceiver() as ok, HttpReceiver([Answer(404)]) as gone, HttpReceiver() as callback:
        items = [{"url": ok.url, "data": {"n": n}} for n in range(10)]
        items[9] = {"url": gone.url, "data": {"n": 9}}
        async with api_client(make_app(batch_chunk_items=4), headers=AUTH) as api:
            accepted = await _accepted(api, {"channel": "webhook", "items": items, "webhookUrl": callback.url})
            batch_id = accepted["batchId"]
            # An item of the last chunk, streamed from the run that holds it.
            stream = await sse_events(api, f"{batch_id}-8")
            assert stream.closed and stream.statuses[-1] == "completed", stream.statuses
            batch = await _until_done(api, batch_id, 10)
            assert batch["counts"] == {
                "queued": 0,
                "processing": 0,
                "success": 9,
                "failed": 1,
                "cancelled": 0,
                "suppressed": 0,
            }
            for n in range(9):
                status = (await api.get(f"/jobs/{batch_id}-{n}/status")).json()
                assert status["status"] == "completed", status
            failed = (await api.get(f"/notifications/{batch_id}-9")).json()
            assert failed["status"] == "failed" and "404" in failed["error"], failed
            assert_error(await api.get(f"/jobs/{batch_id}-10/status"), 404, "not_found")
            # A chunk's run is no job, nor a batch.
            assert_error(await api.get(f"/jobs/{batch_id}-chunk0/status"), 404, "not_found")
            assert_error(await api.get(f"/batches/{batch_id}-chunk0"), 404, "not_found")
            await callback.until_received(1)
    assert sorted(r.headers["webhook-id"] for r in ok.received) == [f"{batch_id}-{n}" for n in range(9)]
    [received] = callback.received
    payload = Webhook(WEBHOOK_SECRET).verify(received.body, received.headers)
    assert payload["type"] == "batch.completed" and received.headers["webhook-id"] == f"{batch_id}-callback"
    assert payload["data"] == {
        "batchId": batch_id,
        "channel": "webhook",
        "total": 10,
        "counts": {"queued": 0, "processing": 0, "success": 9, "failed": 1, "cancelled": 0, "suppressed": 0},
    }


async def test_cancelling_a_chunked_batch_cancels_every_waiting_item(make_app, workers):
    with HttpReceiver() as receiver, HttpReceiver() as callback:
        items = [{"url": receiver.url, "data": {"n": n}} for n in range(10)]
        async with api_client(make_app(batch_chunk_items=3), headers=AUTH) as api:
            body = {"channel": "webhook", "items": items, "delay": 3_600_000, "webhookUrl": callback.url}
            batch_id = (await _accepted(api, body))["batchId"]
            # One item first, through the job route, in the chunk that holds it; then the rest.
            assert (await api.post(f"/jobs/{batch_id}-7/cancel")).status_code == 202
            assert (await api.get(f"/jobs/{batch_id}-7/status")).json()["status"] == "cancelled"
            response = await api.post(f"/batches/{batch_id}/cancel")
            assert response.status_code == 202, response.text
            assert response.json() == {"batchId": batch_id, "cancelled": 9, "statusUrl": f"/batches/{batch_id}"}
            batch = await _until_done(api, batch_id, 10)
            assert batch["counts"] == {
                "queued": 0,
                "processing": 0,
                "success": 0,
                "failed": 0,
                "cancelled": 10,
                "suppressed": 0,
            }
            assert_error(await api.post(f"/batches/{batch_id}/cancel"), 409, "not_cancellable")
            assert_error(await api.post("/batches/batch-00000000000000000000/cancel"), 404, "not_found")
            await callback.until_received(1)
    assert not receiver.received
    payload = Webhook(WEBHOOK_SECRET).verify(callback.received[0].body, callback.received[0].headers)
    assert payload["data"]["counts"]["cancelled"] == 10
