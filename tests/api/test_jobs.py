"""The /jobs family end to end: POST → 202 → a real workflow on a real worker → state read back."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

import email_validator
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey

from common.models import STATE_MEMO_KEY
from tests.api.helpers import FINAL, assert_error, mail_for, poll, until_final
from tests.support.http_receiver import Answer
from tests.support.temporal import herald_client

STATUS_KEYS = {"id", "type", "status", "attempts", "maxAttempts", "result", "error", "createdAt", "updatedAt"}


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert value.tzinfo is not None, f"{text!r} has no offset"
    return value


async def _accepted(response, prefix: str, status: str = "queued") -> str:
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"jobId", "status", "statusUrl"}, body
    job_id = body["jobId"]
    assert job_id.startswith(f"{prefix}-")
    assert body == {"jobId": job_id, "status": status, "statusUrl": f"/jobs/{job_id}/status"}
    return job_id


async def _durably_started(dev_env, job_id: str) -> dict:
    """Right after the 202, with no waiting: Temporal already has the workflow and its state."""
    description = await herald_client(dev_env).get_workflow_handle(job_id).describe()
    assert description.id == job_id
    return (await description.memo())[STATE_MEMO_KEY]


async def test_email_job_is_sent_and_every_route_reads_it_back(api, dev_env, smtp_sink):
    response = await api.post(
        "/jobs/email", json={"to": "ada@example.com", "subject": "Hello Ada", "body": "First line\nSecond line"}
    )
    job_id = await _accepted(response, "email")
    state = await _durably_started(dev_env, job_id)
    assert state["kind"] == "email" and state["family"] == "jobs"
    search = (await herald_client(dev_env).get_workflow_handle(job_id).describe()).typed_search_attributes
    assert search.get(SearchAttributeKey.for_keyword("HeraldJobType")) == "email"

    status = await until_final(api, job_id)
    assert set(status) >= STATUS_KEYS, status
    assert status["id"] == job_id and status["type"] == "email"
    assert status["status"] == "completed", status
    assert status["attempts"] == 1 and status["maxAttempts"] == 3
    assert status["error"] is None
    assert status["result"]["providerId"] == f"<{job_id}@herald>"
    assert "nextAttemptAt" not in status
    created, updated = _instant(status["createdAt"]), _instant(status["updatedAt"])
    assert abs(created - datetime.now(UTC)) < timedelta(seconds=30)
    assert created <= updated
    [delivery] = status["deliveries"]
    assert delivery["attempt"] == 1 and delivery["succeeded"] is True

    [mail] = mail_for(smtp_sink.outbox, job_id)
    assert mail["To"] == "ada@example.com"
    assert mail["Subject"] == "Hello Ada"
    assert mail.get_content().strip() == "First line\nSecond line"

    bullmq = (await api.get(f"/jobs/{job_id}")).json()
    assert bullmq == {"id": job_id, "status": "completed", "attempts": 1, "maxAttempts": 3, "decisions": []}
    notification = (await api.get(f"/notifications/{job_id}")).json()
    assert notification["status"] == "success"
    assert notification["id"] == job_id and notification["type"] == "email"
    assert notification["recipient"] == "ada@example.com"
    assert notification["attempts"] == 1 and notification["maxAttempts"] == 3
    assert "error" not in notification
    assert (
        await herald_client(dev_env).get_workflow_handle(job_id).describe()
    ).status == WorkflowExecutionStatus.COMPLETED


async def test_sms_job_reaches_the_gateway_with_the_job_id_as_idempotency_key(api, sms_gateway):
    response = await api.post("/jobs/sms", json={"phone": "+1 415 555 0123", "message": "Your code is 123456"})
    job_id = await _accepted(response, "sms")

    status = await until_final(api, job_id)
    assert status["status"] == "completed", status
    assert status["type"] == "sms" and status["attempts"] == 1
    [record] = [r for r in sms_gateway.recorded() if r["idempotencyKey"] == job_id]
    # The API normalises the number to E.164 before it is sent.
    assert record["to"] == "+14155550123" and record["body"] == "Your code is 123456"
    assert status["result"]["providerId"] == record["id"]
    [call] = [c for c in sms_gateway.calls if c.idempotency_key == job_id]
    assert call.header_key == job_id and call.status == 200
    notification = (await api.get(f"/notifications/{job_id}")).json()
    assert notification["status"] == "success" and notification["recipient"] == "+14155550123"


async def test_cleanup_job_removes_only_stale_files_and_lists_them(api, settings):
    temp = settings.temp_dir
    (temp / "sub").mkdir(parents=True, exist_ok=True)
    old = time.time() - 48 * 3600
    for name in ("old.tmp", "sub/old2.tmp"):
        (temp / name).write_text("stale")
        os.utime(temp / name, (old, old))
    (temp / "fresh.tmp").write_text("new")

    job_id = await _accepted(await api.post("/jobs/cleanup", json={"task": "delete_temp"}), "cleanup")
    status = await until_final(api, job_id)
    assert status["status"] == "completed", status
    assert status["type"] == "cleanup"
    assert status["result"] == {
        "task": "delete_temp",
        "directory": str(temp),
        "removed": ["old.tmp", "sub/old2.tmp"],
        "kept": 1,
    }
    assert sorted(p.name for p in temp.rglob("*") if p.is_file()) == ["fresh.tmp"]
    assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "completed"

    # A finished job cannot be cancelled.
    body = assert_error(await api.post(f"/jobs/{job_id}/cancel"), 409, "not_cancellable")
    assert "completed" in body["message"]


async def test_delayed_job_waits_and_can_be_cancelled_before_anything_is_sent(api, dev_env, smtp_sink):
    before = datetime.now(UTC)
    response = await api.post(
        "/jobs/email", json={"to": "late@example.com", "subject": "Later", "body": "in a minute", "delay": 60000}
    )
    job_id = await _accepted(response, "email", status="delayed")
    assert (await _durably_started(dev_env, job_id))["phase"] == "delayed"

    status = (await api.get(f"/jobs/{job_id}/status")).json()
    assert status["status"] == "delayed", status
    due = _instant(status["nextAttemptAt"])
    assert before + timedelta(seconds=59) <= due <= datetime.now(UTC) + timedelta(seconds=61)
    assert status["attempts"] == 0
    assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "delayed"
    assert (await api.get(f"/notifications/{job_id}")).json()["status"] == "queued"

    cancel = await api.post(f"/jobs/{job_id}/cancel")
    assert cancel.status_code == 202, cancel.text
    assert cancel.json() == {"jobId": job_id, "cancelRequested": True, "statusUrl": f"/jobs/{job_id}/status"}
    status = await until_final(api, job_id)
    assert status["status"] == "cancelled", status
    assert "nextAttemptAt" not in status
    assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "cancelled"
    assert (await api.get(f"/notifications/{job_id}")).json()["status"] == "cancelled"
    assert (
        await herald_client(dev_env).get_workflow_handle(job_id).describe()
    ).status == WorkflowExecutionStatus.CANCELED

    assert_error(await api.post(f"/jobs/{job_id}/cancel"), 409, "not_cancellable")
    assert mail_for(smtp_sink.outbox, job_id) == []


async def test_deliver_at_job_is_delayed_until_that_instant(api, sms_gateway):
    due = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    response = await api.post(
        "/jobs/sms", json={"phone": "+14155550100", "message": "at three", "deliverAt": due.isoformat()}
    )
    job_id = await _accepted(response, "sms", status="delayed")
    status = (await api.get(f"/jobs/{job_id}/status")).json()
    assert status["status"] == "delayed" and _instant(status["nextAttemptAt"]) == due
    assert (await api.post(f"/jobs/{job_id}/cancel")).status_code == 202
    assert (await until_final(api, job_id))["status"] == "cancelled"
    assert [c for c in sms_gateway.calls if c.idempotency_key == job_id] == []


async def test_live_retries_show_delayed_attempts_and_last_error_then_complete(api, sms_gateway):
    phone = "+14155551234"
    sms_gateway.script(
        phone, [Answer(500, {"error": "down"}), Answer(500, {"error": "down"}), Answer(200, {"id": "p-1"})]
    )
    response = await api.post(
        "/jobs/sms",
        json={"phone": phone, "message": "retry me", "attempts": 3, "backoff": {"type": "fixed", "delay": 1500}},
    )
    job_id = await _accepted(response, "sms")

    seen: list[dict] = []
    retrying = await poll(
        api, f"/jobs/{job_id}/status", lambda b: b["status"] == "delayed" or b["status"] in FINAL, seen=seen
    )
    assert retrying["status"] == "delayed", seen
    # Read at once, inside the 1.5 s backoff: the other vocabularies say the same.
    bullmq = (await api.get(f"/jobs/{job_id}")).json()
    notification = (await api.get(f"/notifications/{job_id}")).json()
    assert retrying["attempts"] >= 1 and retrying["maxAttempts"] == 3
    assert "HTTP 500" in retrying["error"], retrying
    next_at = _instant(retrying["nextAttemptAt"])
    assert datetime.now(UTC) - timedelta(seconds=2) < next_at < datetime.now(UTC) + timedelta(seconds=3)
    assert bullmq["status"] == "delayed" and bullmq["attempts"] >= 1
    assert notification["status"] == "queued" and "HTTP 500" in notification["error"]

    status = await until_final(api, job_id, seen=seen)
    assert status["status"] == "completed", status
    assert status["attempts"] == 3 and status["error"] is None
    assert status["result"]["providerId"] == "p-1"
    assert [(d["attempt"], d["succeeded"], d["statusCode"]) for d in status["deliveries"]] == [
        (1, False, 500),
        (2, False, 500),
        (3, True, 200),
    ]
    assert "HTTP 500" in status["deliveries"][0]["error"]
    # Both backoffs were visible as `delayed` with a rising attempt count.
    delayed_attempts = sorted({b["attempts"] for b in seen if b["status"] == "delayed"})
    assert delayed_attempts and delayed_attempts[0] >= 1 and delayed_attempts[-1] <= 2
    calls = sms_gateway.calls_to(phone)
    assert [c.status for c in calls] == [500, 500, 200]
    assert {c.idempotency_key for c in calls} == {c.header_key for c in calls} == {job_id}


async def test_later_backoffs_show_the_smtp_error_and_every_attempt(api, smtp_sink, monkeypatch):
    # Attempts 2+ run as ordinary activities, and each backoff's state (the error, the attempt log) is in the
    # run's memo. (Where the server retries an attempt, it keeps the failure as the pending activity's last
    # failure, and one bigger than its limit (4 KiB) as "Failure exceeds size limit.") The status read during
    # those backoffs must still say what the SMTP server said.
    smtp_error = "SMTP server answered 451 4.3.0 try again later"
    # The dev SMTP sink's tempfail.test mailbox, as a dev-mode API accepts it (api/main.py).
    monkeypatch.setattr(email_validator, "TEST_ENVIRONMENT", True)
    response = await api.post(
        "/jobs/email",
        json={
            "to": "y@tempfail.test",
            "subject": "probe",
            "body": "x",
            "attempts": 4,
            "backoff": {"type": "fixed", "delay": 2000},
        },
    )
    job_id = await _accepted(response, "email")
    url = f"/jobs/{job_id}/status"
    for done in (2, 3):
        waiting = await poll(api, url, lambda b, n=done: (b["status"], b["attempts"]) == ("delayed", n))
        assert waiting["error"] == smtp_error, waiting
        assert [(d["attempt"], d["succeeded"], d["statusCode"], d["error"]) for d in waiting["deliveries"]] == [
            (n, False, 451, smtp_error) for n in range(1, done + 1)
        ], waiting
    status = await until_final(api, job_id)
    assert status["status"] == "failed" and status["attempts"] == 4, status
    assert status["error"] == smtp_error
    assert [d["attempt"] for d in status["deliveries"]] == [1, 2, 3, 4]
    assert {d["responseExcerpt"] for d in status["deliveries"]} == {"4.3.0 try again later"}


async def test_release_runs_a_job_in_its_second_backoff_now(api, sms_gateway):
    """Every retry backoff is the run's own timer: released in its first (60 s) and its second (120 s)."""
    phone = "+14155550178"
    sms_gateway.script(
        phone, [Answer(503, {"error": "busy"}), Answer(500, {"error": "down"}), Answer(200, {"id": "r-3"})]
    )
    body = {"phone": phone, "message": "released", "attempts": 3, "backoff": {"type": "exponential", "delay": 60_000}}
    job_id = await _accepted(await api.post("/jobs/sms", json=body), "sms")
    url = f"/jobs/{job_id}/status"
    await poll(api, url, lambda b: (b["status"], b["attempts"]) == ("delayed", 1))
    assert (await api.post(f"/jobs/{job_id}/release")).status_code == 202

    waiting = await poll(api, url, lambda b: (b["status"], b["attempts"]) == ("delayed", 2) or b["status"] in FINAL)
    assert (waiting["status"], waiting["attempts"]) == ("delayed", 2), waiting
    assert "HTTP 500" in waiting["error"] and [d["attempt"] for d in waiting["deliveries"]] == [1, 2]
    due = _instant(waiting["nextAttemptAt"])
    assert timedelta(seconds=100) < due - datetime.now(UTC) <= timedelta(seconds=120), due
    released = await api.post(f"/jobs/{job_id}/release")
    assert released.status_code == 202, released.text
    assert released.json() == {"jobId": job_id, "released": True, "statusUrl": url}

    done = await until_final(api, job_id)
    assert done["status"] == "completed" and done["attempts"] == 3, done
    assert [(d["rule"], d["outcome"]) for d in done["decisions"]] == [("release", "released")] * 2
    assert [c.status for c in sms_gateway.calls_to(phone)] == [503, 500, 200]
    assert_error(await api.post(f"/jobs/{job_id}/release"), 409, "not_waiting")


async def test_exhausted_retries_fail_and_keep_the_last_error(api, sms_gateway):
    phone = "+12025550147"
    sms_gateway.script(phone, [Answer(503, {"error": "busy"})])
    response = await api.post(
        "/jobs/sms",
        json={"phone": phone, "message": "never", "attempts": 2, "backoff": {"type": "fixed", "delay": 300}},
    )
    job_id = await _accepted(response, "sms")
    status = await until_final(api, job_id)
    assert status["status"] == "failed", status
    assert status["attempts"] == 2 and status["maxAttempts"] == 2
    assert "HTTP 503" in status["error"]
    assert [d["statusCode"] for d in status["deliveries"]] == [503, 503]
    bullmq = (await api.get(f"/jobs/{job_id}")).json()
    assert bullmq["status"] == "failed" and "HTTP 503" in bullmq["error"]
    notification = (await api.get(f"/notifications/{job_id}")).json()
    assert notification["status"] == "failed" and "HTTP 503" in notification["error"]
    assert len(sms_gateway.calls_to(phone)) == 2
    assert_error(await api.post(f"/jobs/{job_id}/cancel"), 409, "not_cancellable")


async def test_a_rejection_fails_at_once_without_retries(api, sms_gateway):
    phone = "+14155550199"
    sms_gateway.script(phone, [Answer(400, {"error": "bad number"})])
    job_id = await _accepted(await api.post("/jobs/sms", json={"phone": phone, "message": "x", "attempts": 5}), "sms")
    status = await until_final(api, job_id)
    assert status["status"] == "failed" and status["attempts"] == 1 and status["maxAttempts"] == 5
    assert "HTTP 400" in status["error"]
    assert len(sms_gateway.calls_to(phone)) == 1


async def test_a_job_being_sent_is_processing_and_cannot_be_cancelled(api, sms_gateway):
    phone = "+14155550311"
    release = sms_gateway.hold(phone)
    try:
        job_id = await _accepted(await api.post("/jobs/sms", json={"phone": phone, "message": "slow"}), "sms")
        status = await poll(api, f"/jobs/{job_id}/status", lambda b: b["status"] != "queued")
        assert status["status"] == "processing", status
        assert status["attempts"] == 1 and status["error"] is None and "nextAttemptAt" not in status
        assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "active"
        assert (await api.get(f"/notifications/{job_id}")).json()["status"] == "processing"
        body = assert_error(await api.post(f"/jobs/{job_id}/cancel"), 409, "not_cancellable")
        assert "being sent" in body["message"]
    finally:
        release.set()
    status = await until_final(api, job_id)
    assert status["status"] == "completed" and status["attempts"] == 1


async def test_a_job_terminated_by_an_operator_reads_failed(api, dev_env):
    response = await api.post("/jobs/cleanup", json={"task": "delete_temp", "delay": 60000})
    job_id = await _accepted(response, "cleanup", status="delayed")
    await herald_client(dev_env).get_workflow_handle(job_id).terminate(reason="operator")
    status = (await api.get(f"/jobs/{job_id}/status")).json()
    assert status["status"] == "failed" and status["error"] == "terminated by an operator"
    assert (await api.get(f"/jobs/{job_id}")).json() == {
        "id": job_id,
        "status": "failed",
        "attempts": 0,
        "maxAttempts": 3,
        "error": "terminated by an operator",
        "decisions": [],
    }
    assert (await api.get(f"/notifications/{job_id}")).json()["status"] == "failed"
    assert_error(await api.post(f"/jobs/{job_id}/cancel"), 409, "not_cancellable")


@pytest.mark.parametrize("priority", [1, 2, 3, 4, 5])
async def test_priority_reaches_temporal(api, dev_env, priority):
    response = await api.post("/jobs/cleanup", json={"task": "expire_sessions", "priority": priority})
    job_id = await _accepted(response, "cleanup")
    info = (await herald_client(dev_env).get_workflow_handle(job_id).describe()).raw_description.workflow_execution_info
    assert info.priority.priority_key == priority
    assert (await until_final(api, job_id))["status"] == "completed"


async def test_a_finished_job_is_searchable_by_type_and_final_status(api, dev_env, smtp_sink, sms_gateway):
    """HeraldJobType and the final HeraldStatus are in visibility (the Web UI's filters, the DLQ, stats)."""
    done = (await api.post("/jobs/email", json={"to": "sa@example.com", "subject": "s", "body": "b"})).json()["jobId"]
    phone = "+14155550312"
    sms_gateway.script(phone, [Answer(400, {"error": "no"})])
    failed = (await api.post("/jobs/sms", json={"phone": phone, "message": "x"})).json()["jobId"]
    assert (await until_final(api, done))["status"] == "completed"
    assert (await until_final(api, failed))["status"] == "failed"
    for job_id, kind, word in ((done, "email", "completed"), (failed, "sms", "failed")):
        query = f"WorkflowId = '{job_id}' AND HeraldJobType = '{kind}' AND HeraldStatus = '{word}'"
        end = time.monotonic() + 10
        while (await herald_client(dev_env).count_workflows(query)).count != 1:
            assert time.monotonic() < end, f"visibility never showed {query}"
            await asyncio.sleep(0.2)
