"""The dead-letter queue through /admin/dlq: recorded, filtered, paged, redriven, discarded."""

from __future__ import annotations

import json
import logging

import pytest

from common.tenants import bare_key_tenant
from tests.api.helpers import (
    ADMIN,
    API_KEY,
    AUTH,
    assert_error,
    dead_letters,
    failed_webhook,
    listed,
    poll,
    until_final,
)
from tests.support.http_receiver import Answer, HttpReceiver

pytestmark = pytest.mark.usefixtures("workers")


async def test_a_failed_job_is_a_dead_letter_with_its_reason(api):
    with HttpReceiver([Answer(404, {"error": "no such hook"})]) as receiver:
        job_id = await failed_webhook(api, receiver.url)
    entry = await listed(api, job_id)
    assert entry["type"] == "webhook" and entry["attempts"] == 1
    assert "HTTP 404" in entry["error"]
    assert entry["failedAt"]
    assert set(entry) == {"jobId", "type", "error", "attempts", "failedAt", "tenant"}
    assert entry["tenant"] == bare_key_tenant(API_KEY)  # the session key's tenant (a bare key's)


async def test_the_dlq_filters_by_type_and_pages_newest_first(api, sms_gateway):
    phone = "+14155550177"
    sms_gateway.script(phone, [Answer(400, {"error": "bad number"})])
    sms = (await api.post("/notify/sms", json={"phone": phone, "message": "x"})).json()["notificationId"]
    await poll(api, f"/notifications/{sms}", lambda b: b["status"] == "failed")
    with HttpReceiver([Answer(410)]) as receiver:
        hooks = [await failed_webhook(api, receiver.url) for _ in range(3)]
    await listed(api, hooks[-1])
    await listed(api, sms)

    only_sms = await dead_letters(api, type="sms", limit=500)
    assert sms in {d["jobId"] for d in only_sms} and {d["type"] for d in only_sms} == {"sms"}
    only_hooks = await dead_letters(api, type="webhook", limit=500)
    assert set(hooks) <= {d["jobId"] for d in only_hooks} and sms not in {d["jobId"] for d in only_hooks}

    pages, cursor = [], None
    while True:
        params = {"type": "webhook", "limit": 2} | ({"cursor": cursor} if cursor else {})
        body = (await api.get("/admin/dlq", params=params, headers=ADMIN)).json()
        assert len(body["items"]) <= 2
        pages.append(body["items"])
        cursor = body["nextCursor"]
        if not cursor:
            break
    seen = [d["jobId"] for page in pages for d in page]
    assert len(seen) == len(set(seen)) == len(only_hooks), "pages neither repeat nor skip"
    # Newest first: our three webhooks, failed one after another, come in the reverse order.
    ours = [job_id for job_id in seen if job_id in hooks]
    assert ours == hooks[::-1]


async def test_redrive_runs_the_same_job_id_again_and_takes_it_out_of_the_dlq(api, caplog):
    caplog.set_level(logging.INFO, logger="herald")
    with HttpReceiver([Answer(404), Answer(200, {"ok": True})]) as receiver:
        job_id = await failed_webhook(api, receiver.url)
        await listed(api, job_id)
        response = await api.post(f"/admin/dlq/{job_id}/retry", headers=ADMIN)
        assert response.status_code == 202, response.text
        assert response.json() == {"jobId": job_id, "status": "queued", "statusUrl": f"/jobs/{job_id}/status"}
        status = await until_final(api, job_id)
        assert len(receiver.received) == 2
    assert status["status"] == "completed" and status["attempts"] == 1, status
    assert {r.headers["webhook-id"] for r in receiver.received} == {job_id}
    assert (await api.get(f"/notifications/{job_id}")).json()["status"] == "success"
    await listed(api, job_id, present=False)
    assert_error(await api.post(f"/admin/dlq/{job_id}/retry", headers=ADMIN), 404, "not_found")
    events = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    assert any(e.get("event") == "redriven" and e.get("job_id") == job_id for e in events)


async def test_redrive_all_of_one_type(api, sms_gateway):
    phone = "+14155550188"
    sms_gateway.script(phone, [Answer(422), Answer(422), Answer(200, {"id": "a"}), Answer(200, {"id": "b"})])
    ids = []
    for _ in range(2):
        nid = (await api.post("/notify/sms", json={"phone": phone, "message": "again"})).json()["notificationId"]
        await poll(api, f"/notifications/{nid}", lambda b: b["status"] == "failed")
        ids.append(nid)
    for nid in ids:
        await listed(api, nid, type="sms")
    response = await api.post("/admin/dlq/retry", json={"type": "sms"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["redriven"] >= 2
    for nid in ids:
        assert (await until_final(api, nid))["status"] == "completed"
        await listed(api, nid, present=False)


async def test_discard_removes_a_dead_letter(api, caplog):
    caplog.set_level(logging.INFO, logger="herald")
    with HttpReceiver([Answer(400)]) as receiver:
        job_id = await failed_webhook(api, receiver.url)
    await listed(api, job_id)
    response = await api.delete(f"/admin/dlq/{job_id}", headers=ADMIN)
    assert response.status_code == 200 and response.json() == {"jobId": job_id, "discarded": True}
    await listed(api, job_id, present=False)
    assert_error(await api.delete(f"/admin/dlq/{job_id}", headers=ADMIN), 404, "not_found")
    # Its history stays readable until retention: the job still reads failed, with its reason.
    status = (await api.get(f"/jobs/{job_id}/status")).json()
    assert status["status"] == "failed" and "HTTP 400" in status["error"]
    events = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    assert any(e.get("event") == "discarded" and e.get("job_id") == job_id for e in events)


async def test_only_dead_letters_can_be_redriven_or_discarded(api, smtp_sink):
    response = await api.post("/jobs/email", json={"to": "ok@example.com", "subject": "s", "body": "b"})
    job_id = response.json()["jobId"]
    assert (await until_final(api, job_id))["status"] == "completed"
    assert_error(await api.post(f"/admin/dlq/{job_id}/retry", headers=ADMIN), 404, "not_found")
    assert_error(await api.delete(f"/admin/dlq/{job_id}", headers=ADMIN), 404, "not_found")
    assert_error(await api.post("/admin/dlq/no-such-job/retry", headers=ADMIN), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/admin/dlq"), ("POST", "/admin/dlq/retry"), ("POST", "/admin/dlq/x/retry"), ("DELETE", "/admin/dlq/x")],
)
async def test_the_dlq_takes_the_admin_token(anon, method, path):
    assert_error(await anon.request(method, path), 401, "unauthorized")
    assert_error(await anon.request(method, path, headers=AUTH), 403, "forbidden")


async def test_a_bad_cursor_or_type_is_a_400(api):
    assert_error(await api.get("/admin/dlq", params={"cursor": "%%%"}, headers=ADMIN), 400, "validation_error")
    assert_error(
        await api.get("/admin/dlq", params={"cursor": "bm90LWEtdG9rZW4"}, headers=ADMIN), 400, "validation_error"
    )
    assert_error(await api.get("/admin/dlq", params={"type": "fax"}, headers=ADMIN), 400, "validation_error")
    assert_error(await api.get("/admin/dlq", params={"limit": 0}, headers=ADMIN), 400, "validation_error")
