"""POST /notify/batch and GET /batches/{id} end to end: items delivered, read back by their job ids,
refused whole for one bad item, failing alone into dead letters of their own, cancelled, and a
thousand of them in one request within the history limits."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest

from tests.api.helpers import ADMIN, AUTH, api_client, assert_error, collapsed, mail_for, poll, sse_events
from tests.support.http_receiver import Answer

DONE_WORDS = {"success", "failed", "cancelled"}


async def _batch(api, body: dict) -> dict:
    response = await api.post("/notify/batch", json=body)
    assert response.status_code == 202, response.text
    accepted = response.json()
    batch_id = accepted["batchId"]
    assert accepted == {
        "batchId": batch_id,
        "statusUrl": f"/batches/{batch_id}",
        "jobIds": [f"{batch_id}-{n}" for n in range(len(body["items"]))],
    }
    return accepted


async def _until_done(api, batch_id: str, deadline_s: float = 30) -> dict:
    return await poll(api, f"/batches/{batch_id}", lambda b: b["done"], deadline_s=deadline_s)


async def test_a_batch_of_emails_is_delivered_and_each_item_reads_as_a_job(api, smtp_sink):
    items = [{"to": f"user{n}@example.com", "subject": f"Newsletter {n}", "body": f"Hello {n}"} for n in range(5)]
    accepted = await _batch(api, {"channel": "email", "items": items})
    batch = await _until_done(api, accepted["batchId"])
    assert batch == {
        "id": accepted["batchId"],
        "channel": "email",
        "total": 5,
        "done": True,
        "counts": {"queued": 0, "processing": 0, "success": 5, "failed": 0, "cancelled": 0, "suppressed": 0},
    }
    for n, job_id in enumerate(accepted["jobIds"]):
        status = (await api.get(f"/jobs/{job_id}/status")).json()
        assert status["id"] == job_id and status["type"] == "email", status
        assert status["status"] == "completed" and status["attempts"] == 1 and status["maxAttempts"] == 3, status
        assert status["result"]["providerId"] == f"<{job_id}@herald>", status
        notification = (await api.get(f"/notifications/{job_id}")).json()
        assert notification["status"] == "success" and notification["recipient"] == f"user{n}@example.com"
        assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "completed"
        [mail] = mail_for(smtp_sink.outbox, job_id)
        assert mail["Subject"] == f"Newsletter {n}" and mail["To"] == f"user{n}@example.com"
    # An id past the batch's items, or of no batch at all, is no job.
    assert_error(await api.get(f"/jobs/{accepted['batchId']}-5/status"), 404, "not_found")
    assert_error(await api.get("/jobs/batch-00000000000000000000-0/status"), 404, "not_found")
    assert_error(await api.get("/batches/batch-00000000000000000000"), 404, "not_found")


async def test_a_batch_of_sms_is_delivered_with_one_idempotency_key_per_item(api, sms_gateway):
    phones = ["+14155550121", "+14155550122", "+14155550123"]
    accepted = await _batch(
        api, {"channel": "sms", "items": [{"phone": p, "message": f"code {p[-3:]}"} for p in phones]}
    )
    batch = await _until_done(api, accepted["batchId"])
    assert batch["counts"]["success"] == 3, batch
    for phone, job_id in zip(phones, accepted["jobIds"]):
        [call] = sms_gateway.calls_to(phone)
        assert (call.to, call.idempotency_key, call.header_key, call.status) == (phone, job_id, job_id, 200)
        assert (await api.get(f"/notifications/{job_id}")).json()["status"] == "success"


async def test_sms_items_count_against_their_numbers_hourly_limit(api, make_app, sms_gateway):
    phone, limit = "+14155550141", 3
    items = [{"phone": phone, "message": f"wave {n}"} for n in range(limit + 1)]
    async with api_client(make_app(sms_per_hour=limit), headers=AUTH) as limited:
        response = await limited.post("/notify/batch", json={"channel": "sms", "items": items})
        assert_error(response, 429, "rate_limited")
        assert int(response.headers["Retry-After"]) > 0
        # All or none: the refused batch took no slot, so the limit's worth still goes out.
        accepted = await _batch(limited, {"channel": "sms", "items": items[:-1]})
        assert (await _until_done(limited, accepted["batchId"]))["counts"]["success"] == limit
    assert len(sms_gateway.calls_to(phone)) == limit


async def test_one_bad_item_refuses_the_whole_batch(api):
    items = [
        {"to": "a@example.com", "subject": "s", "body": "b"},
        {"to": "not an address", "subject": "s", "body": "b"},
        {"to": "c@example.com", "subject": "s", "body": "b", "attempts": 2},
    ]
    body = assert_error(
        await api.post("/notify/batch", json={"channel": "email", "items": items}), 400, "validation_error"
    )
    assert {d["field"] for d in body["details"]} == {"items.1.to", "items.2.attempts"}
    body = assert_error(
        await api.post(
            "/notify/batch",
            json={
                "channel": "webhook",
                "items": [
                    {"url": "http://127.0.0.1:9/ok", "data": {}},
                    {"url": "http://169.254.169.254/latest", "data": {}},
                ],
            },
        ),
        400,
        "validation_error",
    )
    assert [d["field"] for d in body["details"]] == ["items.1.url"]
    body = assert_error(await api.post("/notify/batch", json={"channel": "fax", "items": []}), 400, "validation_error")
    assert [d["field"] for d in body["details"]] == ["channel"]
    body = assert_error(await api.post("/notify/batch", json={"channel": "sms", "items": []}), 400, "validation_error")
    assert [d["field"] for d in body["details"]] == ["items"]


async def test_a_failing_item_fails_alone_and_is_a_dead_letter_that_can_be_redriven(api, sms_gateway):
    good, bad = "+14155550131", "+14155550132"
    # The bad number's gateway fails twice (its two attempts), then accepts the redrive.
    sms_gateway.script(bad, [Answer(503), Answer(500), Answer(200, {"id": "redriven"})])
    accepted = await _batch(
        api,
        {
            "channel": "sms",
            "attempts": 2,
            "backoff": {"type": "fixed", "delay": 50},
            "items": [{"phone": good, "message": "ok"}, {"phone": bad, "message": "ok"}],
        },
    )
    batch = await _until_done(api, accepted["batchId"])
    assert batch["counts"] == {
        "queued": 0,
        "processing": 0,
        "success": 1,
        "failed": 1,
        "cancelled": 0,
        "suppressed": 0,
    }, batch
    good_id, bad_id = accepted["jobIds"]
    assert (await api.get(f"/jobs/{good_id}/status")).json()["attempts"] == 1
    failed = await poll(api, f"/jobs/{bad_id}/status", lambda b: b["status"] == "failed")
    assert failed["attempts"] == 2 and "500" in failed["error"], failed
    for _ in range(100):
        entry = (await api.get("/admin/dlq?type=sms&limit=100", headers=ADMIN)).json()
        if bad_id in [i["jobId"] for i in entry["items"]]:
            break
        await asyncio.sleep(0.1)
    [letter] = [i for i in entry["items"] if i["jobId"] == bad_id]
    assert letter["attempts"] == 2 and "500" in letter["error"], letter
    assert len(sms_gateway.calls_to(bad)) == 2
    response = await api.post(f"/admin/dlq/{bad_id}/retry", headers=ADMIN)
    assert response.status_code == 202, response.text
    status = await poll(api, f"/jobs/{bad_id}/status", lambda b: b["status"] == "completed")
    assert status["result"]["providerId"] == "redriven", status
    calls = sms_gateway.calls_to(bad)
    assert [c.status for c in calls] == [503, 500, 200] and {c.idempotency_key for c in calls} == {bad_id}
    assert len(sms_gateway.calls_to(good)) == 1


async def test_cancel_a_waiting_item_and_then_the_rest_of_its_batch(api):
    items = [{"url": "http://127.0.0.1:9/never", "data": {"n": n}} for n in range(3)]
    accepted = await _batch(api, {"channel": "webhook", "delay": 3_600_000, "items": items})
    batch_id, (first, second, third) = accepted["batchId"], accepted["jobIds"]
    waiting = await poll(api, f"/jobs/{first}/status", lambda b: b["status"] == "delayed")
    assert waiting["nextAttemptAt"], waiting
    response = await api.post(f"/jobs/{second}/cancel")
    assert response.status_code == 202, response.text
    assert (await api.get(f"/notifications/{second}")).json()["status"] == "cancelled"
    assert (await api.get(f"/jobs/{first}")).json()["status"] == "delayed"
    assert_error(await api.post(f"/jobs/{second}/cancel"), 409, "not_cancellable")
    response = await api.post(f"/jobs/{batch_id}/cancel")
    assert response.status_code == 202 and response.json()["statusUrl"] == f"/batches/{batch_id}", response.text
    batch = await _until_done(api, batch_id)
    assert batch["counts"] == {
        "queued": 0,
        "processing": 0,
        "success": 0,
        "failed": 0,
        "cancelled": 3,
        "suppressed": 0,
    }, batch
    assert_error(await api.post(f"/jobs/{batch_id}/cancel"), 409, "not_cancellable")
    assert_error(await api.post(f"/jobs/{third}/cancel"), 409, "not_cancellable")


async def test_a_thousand_emails_in_one_request_within_the_history_limits(api, dev_env, smtp_sink):
    items = [{"to": f"bulk{n}@example.com", "subject": "Bulk", "body": f"item {n}"} for n in range(1000)]
    accepted = await _batch(api, {"channel": "email", "items": items})
    batch = await _until_done(api, accepted["batchId"], deadline_s=60)
    assert batch["counts"]["success"] == 1000, batch
    assert mail_for(smtp_sink.outbox, accepted["jobIds"][999])
    history = await dev_env.client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace=dev_env.client.namespace,
            execution=WorkflowExecution(workflow_id=accepted["batchId"]),
            maximum_page_size=1000,
        )
    )
    events = list(history.history.events)
    assert not history.next_page_token
    # Temporal's limits: 51,200 events and 50 MB per history (a warning at 10,240 events).
    assert len(events) < 300, len(events)
    assert sum(e.ByteSize() for e in events) < 2 * 1024 * 1024
    assert sum(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED for e in events) == 20


async def test_a_batch_item_streams_its_states_and_long_polls_like_a_job(live, sms_gateway):
    phone = "+14155550151"
    sms_gateway.script(phone, [Answer(503), Answer(200, {"id": "late"})])
    response = await live.post(
        "/notify/batch",
        json={
            "channel": "sms",
            "backoff": {"type": "fixed", "delay": 1500},
            "items": [{"phone": phone, "message": "live"}],
        },
    )
    assert response.status_code == 202, response.text
    [job_id] = response.json()["jobIds"]
    stream = await sse_events(live, job_id)
    assert stream.status_code == 200 and stream.closed
    words = collapsed(stream.statuses)
    assert words[-1] == "completed" and "delayed" in words, words
    assert stream.events[-1]["data"]["attempts"] == 2 and stream.events[-1]["data"]["id"] == job_id
    # The item is final: a long poll on it answers its state (no change comes) after the wait.
    answer = await live.get(f"/jobs/{job_id}/status", params={"wait": 0.2})
    assert answer.status_code == 200 and answer.json()["status"] == "completed"


async def test_a_terminated_batch_reads_its_unfinished_items_as_failed(api, dev_env):
    accepted = await _batch(
        api,
        {"channel": "email", "delay": 3_600_000, "items": [{"to": "late@example.com", "subject": "s", "body": "b"}]},
    )
    await poll(api, f"/jobs/{accepted['jobIds'][0]}/status", lambda b: b["status"] == "delayed")
    await dev_env.client.get_workflow_handle(accepted["batchId"]).terminate("by an operator")
    status = (await api.get(f"/jobs/{accepted['jobIds'][0]}/status")).json()
    assert status["status"] == "failed" and "terminated" in status["error"], status
    batch = (await api.get(f"/batches/{accepted['batchId']}")).json()
    assert batch["done"] and batch["counts"]["failed"] == 1, batch


async def test_an_idempotency_key_makes_a_retried_batch_the_same_batch(api, smtp_sink):
    body = {"channel": "email", "items": [{"to": "once@example.com", "subject": "Once", "body": "b"}]}
    headers = {"Idempotency-Key": f"batch-retry-{uuid.uuid4().hex}"}
    first = await api.post("/notify/batch", json=body, headers=headers)
    again = await api.post("/notify/batch", json=body, headers=headers)
    assert first.status_code == again.status_code == 202, again.text
    assert again.json() == first.json() and again.headers.get("Idempotency-Replayed") == "true"
    [job_id] = first.json()["jobIds"]
    await _until_done(api, first.json()["batchId"])
    assert len(mail_for(smtp_sink.outbox, job_id)) == 1


async def test_the_operators_field_limits_apply_to_each_item(make_app, workers):
    async with api_client(make_app(max_subject_chars=10, max_sms_chars=5), headers=AUTH) as limited:
        items = [
            {"to": "a@example.com", "subject": "short", "body": "b"},
            {"to": "b@example.com", "subject": "far too long a subject", "body": "b"},
        ]
        body = assert_error(
            await limited.post("/notify/batch", json={"channel": "email", "items": items}), 400, "validation_error"
        )
        assert [d["field"] for d in body["details"]] == ["items.1.subject"]
        body = assert_error(
            await limited.post(
                "/notify/batch", json={"channel": "sms", "items": [{"phone": "+14155550161", "message": "123456"}]}
            ),
            400,
            "validation_error",
        )
        assert [d["field"] for d in body["details"]] == ["items.0.message"]


async def test_a_batch_over_the_item_setting_is_a_400_on_items_and_the_setting_itself_is_accepted(make_app, workers):
    """HERALD_MAX_BATCH_ITEMS bounds a batch's items (docs/settings.md: more is a 400 on `items`)."""
    items = [{"to": f"cap{n}@example.com", "subject": "Capped", "body": f"item {n}"} for n in range(6)]
    async with api_client(make_app(max_batch_items=5), headers=AUTH) as limited:
        body = assert_error(
            await limited.post("/notify/batch", json={"channel": "email", "items": items}), 400, "validation_error"
        )
        assert body["details"] == [{"field": "items", "message": "at most 5 items in one batch"}]
        # Exactly the setting's worth is a batch.
        accepted = await _batch(limited, {"channel": "email", "items": items[:5]})
        assert (await _until_done(limited, accepted["batchId"]))["counts"]["success"] == 5


async def test_the_batch_route_has_a_body_limit_of_its_own(make_app, workers):
    """HERALD_MAX_BATCH_BODY_BYTES bounds POST /notify/batch's body (413 over it); every other route keeps
    HERALD_MAX_BODY_BYTES, however large the batch limit."""
    items = [{"to": f"bytes{n}@example.com", "subject": "Sized", "body": "x" * 500} for n in range(3)]
    fits = {"channel": "email", "items": items}
    too_big = {"channel": "email", "items": items * 3}
    assert 1024 < len(json.dumps(fits)) < 4096 < len(json.dumps(too_big))
    async with api_client(make_app(max_body_bytes=1024, max_batch_body_bytes=4096), headers=AUTH) as limited:
        # Over HERALD_MAX_BODY_BYTES but within the batch's own limit.
        accepted = await _batch(limited, fits)
        body = assert_error(await limited.post("/notify/batch", json=too_big), 413, "payload_too_large")
        assert body["message"] == "the body is larger than 4096 bytes" and body["details"] == []

        # Chunked, with no Content-Length: counted against the same limit as it streams in.
        async def chunks():
            encoded = json.dumps(too_big).encode()
            for start in range(0, len(encoded), 1000):
                yield encoded[start : start + 1000]

        request = limited.build_request(
            "POST", "/notify/batch", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in request.headers
        assert_error(await limited.send(request), 413, "payload_too_large")
        # Another route, with a body the batch route would take: its own, smaller limit.
        body = assert_error(
            await limited.post("/notify/email", json={"to": "bytes@example.com", "subject": "s", "body": "x" * 1500}),
            413,
            "payload_too_large",
        )
        assert body["message"] == "the body is larger than 1024 bytes"
        assert (await _until_done(limited, accepted["batchId"]))["counts"]["success"] == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"items": [{"to": "ada@example.com", "subject": "s", "body": "b"}]}, "field required"),
        ({"channel": "fax", "items": []}, "must be one of 'email', 'sms', 'webhook'"),
    ],
)
async def test_a_missing_or_unknown_channel_is_a_400_on_channel(api, body, message):
    details = assert_error(await api.post("/notify/batch", json=body), 400, "validation_error")["details"]
    assert details == [{"field": "channel", "message": message}]
