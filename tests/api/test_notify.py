"""The /notify family end to end, read back through /notifications/{id} and the /jobs routes."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest
from standardwebhooks.webhooks import Webhook
from temporalio.api.enums.v1 import EventType

from tests.api.helpers import assert_error, mail_for, poll
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import WEBHOOK_SECRET, herald_client

NOTIFICATION_KEYS = {"id", "type", "recipient", "status", "attempts", "maxAttempts", "createdAt", "updatedAt"}


def _accepted(response) -> str:
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"notificationId", "status", "statusUrl"}, body
    nid = body["notificationId"]
    assert body == {"notificationId": nid, "status": "queued", "statusUrl": f"/notifications/{nid}"}
    return nid


async def _until_final(api, nid: str) -> dict:
    return await poll(api, f"/notifications/{nid}", lambda b: b["status"] in {"success", "failed", "cancelled"})


async def test_notify_email_is_sent_and_reads_success(api, dev_env, smtp_sink):
    nid = _accepted(
        await api.post(
            "/notify/email", json={"to": "bob@example.com", "subject": "Hi Bob", "body": "Hello from Herald"}
        )
    )
    assert nid.startswith("email-")
    await herald_client(dev_env).get_workflow_handle(nid).describe()  # durably started before the 202

    body = await _until_final(api, nid)
    assert set(body) >= NOTIFICATION_KEYS, body
    assert body["status"] == "success", body
    assert body["type"] == "email" and body["recipient"] == "bob@example.com"
    assert body["attempts"] == 1 and body["maxAttempts"] == 3
    assert "error" not in body
    [mail] = mail_for(smtp_sink.outbox, nid)
    assert mail["Subject"] == "Hi Bob" and mail.get_content().strip() == "Hello from Herald"

    # The /jobs routes answer for it too, each in its own words.
    status = (await api.get(f"/jobs/{nid}/status")).json()
    assert status["status"] == "completed" and status["id"] == nid and status["type"] == "email"
    assert (await api.get(f"/jobs/{nid}")).json()["status"] == "completed"


async def test_notify_sms_reaches_the_gateway(api, sms_gateway):
    nid = _accepted(await api.post("/notify/sms", json={"phone": "+14155550100", "message": "Hi from Herald"}))
    assert nid.startswith("sms-")
    body = await _until_final(api, nid)
    assert body["status"] == "success" and body["type"] == "sms" and body["recipient"] == "+14155550100"
    [record] = [r for r in sms_gateway.recorded() if r["idempotencyKey"] == nid]
    assert record["to"] == "+14155550100" and record["body"] == "Hi from Herald"
    [call] = [c for c in sms_gateway.calls if c.idempotency_key == nid]
    assert call.authorization == "Bearer sms-test-token" and call.header_key == nid


@pytest.mark.parametrize(
    "data",
    [
        {"order": {"id": 42, "items": ["a", "b"], "total": 9.5}, "paid": True, "note": None, "text": "héllo ✓"},
        [1, "two", {"three": 3}],
        None,
    ],
    ids=["object", "list", "null"],
)
async def test_notify_webhook_posts_data_exactly_and_signed(api, data):
    with HttpReceiver([Answer(200, {"ok": True})]) as receiver:
        nid = _accepted(await api.post("/notify/webhook", json={"url": receiver.url + "/hook", "data": data}))
        assert nid.startswith("webhook-")
        body = await _until_final(api, nid)
        assert body["status"] == "success", body
        assert body["type"] == "webhook" and body["recipient"] == receiver.url + "/hook"
        [received] = receiver.received
    assert received.path == "/hook"
    assert received.json() == data
    assert received.headers["content-type"] == "application/json"
    assert received.headers["webhook-id"] == nid
    # Standard Webhooks: the receiver can verify it with the shared secret.
    assert Webhook(WEBHOOK_SECRET).verify(received.body, received.headers) == data
    assert [d["statusCode"] for d in body["deliveries"]] == [200]


async def test_notify_webhook_retries_a_failing_receiver_then_succeeds(api):
    with HttpReceiver([Answer(502), Answer(200)]) as receiver:
        nid = _accepted(
            await api.post(
                "/notify/webhook",
                json={"url": receiver.url, "data": {"n": 1}, "backoff": {"type": "fixed", "delay": 300}},
            )
        )
        body = await _until_final(api, nid)
        assert len(receiver.received) == 2
    assert body["status"] == "success" and body["attempts"] == 2
    assert [d["statusCode"] for d in body["deliveries"]] == [502, 200]
    # Every attempt carries the same webhook-id, so the receiver can de-duplicate.
    assert {r.headers["webhook-id"] for r in receiver.received} == {nid}


@pytest.mark.parametrize(
    ("route", "payload", "status_word"),
    [
        ("/notify/sms", {"phone": "+14155550100", "message": "with callback"}, "success"),
        ("/jobs/email", {"to": "cb@example.com", "subject": "cb", "body": "with callback"}, "completed"),
    ],
    ids=["notify", "jobs"],
)
async def test_webhook_url_gets_the_final_state_in_the_family_words(api, route, payload, status_word):
    with HttpReceiver() as receiver:
        response = await api.post(route, json={**payload, "webhookUrl": receiver.url + "/cb"})
        assert response.status_code == 202, response.text
        job_id = response.json().get("jobId") or response.json()["notificationId"]
        status = await poll(
            api, f"/jobs/{job_id}/status", lambda b: (b.get("callback") or {}).get("status") in {"delivered", "failed"}
        )
        [received] = receiver.received
    assert status["status"] == "completed"
    assert status["callback"]["status"] == "delivered", status["callback"]
    callback = received.json()
    assert callback["type"] == "job.completed"
    assert callback["data"] == {"jobId": job_id, "status": status_word, "attempts": 1}
    Webhook(WEBHOOK_SECRET).verify(received.body, received.headers)
    # The callback's own workflow is not a job: no route answers for it.
    assert_error(await api.get(f"/jobs/{job_id}-callback/status"), 404, "not_found")


async def test_notification_of_a_failed_send_carries_the_error(api):
    with HttpReceiver([Answer(404, {"error": "no such hook"})]) as receiver:
        nid = _accepted(await api.post("/notify/webhook", json={"url": receiver.url, "data": {}}))
        body = await _until_final(api, nid)
    assert body["status"] == "failed" and body["attempts"] == 1
    assert "HTTP 404" in body["error"]
    assert (await api.get(f"/jobs/{nid}/status")).json()["status"] == "failed"


async def test_webhook_500_500_200_attempt_log_through_the_api_without_signals(api, dev_env):
    """Each attempt, its answer and its gap, carried across attempts without a signal per attempt."""
    with HttpReceiver([Answer(500, {"n": 1}), Answer(500, {"n": 2}), Answer(200, {"n": 3})]) as receiver:
        nid = _accepted(
            await api.post(
                "/notify/webhook",
                json={"url": receiver.url, "data": {"k": "v"}, "backoff": {"type": "fixed", "delay": 1000}},
            )
        )
        seen: list[dict] = []
        body = await poll(api, f"/notifications/{nid}", lambda b: b["status"] in {"success", "failed"}, seen=seen)
    assert body["status"] == "success" and body["attempts"] == 3, body
    log = body["deliveries"]
    assert [(d["attempt"], d["succeeded"], d["statusCode"]) for d in log] == [
        (1, False, 500),
        (2, False, 500),
        (3, True, 200),
    ]
    assert [d["responseExcerpt"] for d in log] == ['{"n": 1}', '{"n": 2}', '{"n": 3}']
    assert all("HTTP 500" in d["error"] for d in log[:2]) and log[2].get("error") is None
    started = [datetime.fromisoformat(d["startedAt"]) for d in log]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(started)]
    assert all(1.0 <= g < 3.0 for g in gaps), gaps  # the fixed 1 s backoff, plus the attempt itself
    # While it waited, the log so far was readable too: one attempt, then two.
    waiting = {len(b["deliveries"]) for b in seen if b["status"] == "queued" and b.get("error")}
    assert waiting <= {1, 2} and waiting, seen
    history = [e async for e in herald_client(dev_env).get_workflow_handle(nid).fetch_history_events()]
    assert not [e for e in history if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
