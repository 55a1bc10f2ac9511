"""Reports end to end: POST /reports → a ReportWorkflow on a real worker → the user's notifications
and their states read from Temporal's visibility → a JSON document served at its resultUrl."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from api.jobs.models import JobOptions
from api.jobs.starter import email_job, job_spec, new_job_id, sms_job
from common.jobs import start_options
from common.models import JOB_STATUS_KEY, JOB_USER_KEY, report_id, report_path, user_ref
from common.temporal import client_for
from tests.api.helpers import assert_error, mail_for, poll, until_final
from tests.support.http_receiver import Answer, HttpReceiver

VISIBLE_WITHIN_S = 10.0


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


async def _users_job(client: Client, settings, user_id: str, phone: str | None = None, **options) -> str:
    """A job of `user_id` as typed notifications start them: a job with the HeraldUser attribute
    (an email, or an SMS to `phone`)."""
    opts = JobOptions(**options)
    if phone is None:
        job_id = new_job_id("email")
        request = email_job(
            job_spec(job_id, "email", "notify", opts, settings, "u@example.com", tenant=None),
            "u@example.com",
            "Hi",
            "hello",
        )
    else:
        job_id = new_job_id("sms")
        request = sms_job(job_spec(job_id, "sms", "notify", opts, settings, phone, tenant=None), phone, "hello")
    start = start_options(request)
    attributes = TypedSearchAttributes([*start.search_attributes, SearchAttributePair(JOB_USER_KEY, user_ref(user_id))])
    await client.start_workflow(
        start.workflow, request, id=job_id, task_queue=start.task_queue, memo=start.memo, search_attributes=attributes
    )
    return job_id


async def _visible(client: Client, user_id: str, count: int, final: int) -> None:
    """Visibility is eventually consistent: wait (bounded) until it lists the user's jobs as they are."""
    query = f"{JOB_USER_KEY.name} = '{user_ref(user_id)}'"
    end = time.monotonic() + VISIBLE_WITHIN_S
    while True:
        total = (await client.count_workflows(query)).count
        done = (
            await client.count_workflows(f"{query} AND {JOB_STATUS_KEY.name} IN ('completed', 'failed', 'cancelled')")
        ).count
        if total == count and done == final:
            return
        assert time.monotonic() < end, f"visibility lists {total} jobs, {done} final"
        await asyncio.sleep(0.1)


async def _report_done(api, job_id: str) -> dict:
    return await poll(api, f"/jobs/{job_id}", lambda b: b["status"] in ("completed", "failed", "cancelled"))


async def _post(api, user_id: str, **more) -> str:
    response = await api.post("/reports", json={"userId": user_id, "reportType": "notification-history", **more})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body == {"jobId": report_id(user_id, "notification-history"), "statusUrl": f"/jobs/{body['jobId']}"}
    return body["jobId"]


async def test_a_report_lists_the_users_notifications_and_their_states(api, anon, dev_env, settings, sms_gateway):
    client = client_for(dev_env.client, settings)
    user_id = _user()
    failing = "+14155550314"
    sms_gateway.script(failing, [Answer(400, {"error": "bad number"})])
    sent = await _users_job(client, settings, user_id)
    failed = await _users_job(client, settings, user_id, phone=failing)  # refused at once: a dead letter
    waiting = await _users_job(client, settings, user_id, delay=3_600_000)
    someone_else = await _users_job(client, settings, _user())
    for job_id in (sent, failed, someone_else):
        await until_final(api, job_id)
    await _visible(client, user_id, count=3, final=2)

    job_id = await _post(api, user_id)
    done = await _report_done(api, job_id)
    assert done["status"] == "completed", done
    assert done["resultUrl"] == f"/reports/{job_id}/result"
    status = (await api.get(f"/jobs/{job_id}/status")).json()
    assert status["type"] == "report" and status["status"] == "completed"
    assert status["result"] == {
        "reportType": "notification-history",
        "notifications": 3,
        "resultUrl": f"/reports/{job_id}/result",
    }
    assert (await api.get(f"/notifications/{job_id}")).json()["status"] == "success"

    assert_error(await anon.get(done["resultUrl"]), 401, "unauthorized")
    response = await api.get(done["resultUrl"])
    assert response.status_code == 200, response.text
    report = response.json()
    assert report == json.loads(report_path(settings.data_dir, job_id).read_text())
    assert report["jobId"] == job_id and report["userId"] == user_id
    assert report["reportType"] == "notification-history" and report["total"] == 3
    states = {entry["jobId"]: entry for entry in report["notifications"]}
    assert set(states) == {sent, failed, waiting}  # never another user's
    assert states[sent]["status"] == "completed" and states[sent]["type"] == "email" and states[sent]["finishedAt"]
    assert states[failed]["status"] == "failed" and "HTTP 400" in states[failed]["error"]
    assert states[waiting]["status"] == "delayed" and "finishedAt" not in states[waiting]
    assert report["counts"]["completed"] == 1 and report["counts"]["failed"] == 1 and report["counts"]["delayed"] == 1
    # Newest first.
    assert [e["jobId"] for e in report["notifications"]] == [waiting, failed, sent]
    await client.get_workflow_handle(waiting).cancel()


async def test_an_unknown_or_unfinished_report_is_a_404(api, settings):
    assert_error(await api.get("/reports/report-0000/result"), 404, "not_found")
    assert_error(await api.get(f"/reports/{report_id(_user(), 'notification-history')}/result"), 404, "not_found")
    assert_error(await api.get("/reports/..%2F..%2Fetc%2Fpasswd/result"), 404, "not_found")


async def _concurrent_requests_make_one_report(api, dev_env, settings, n: int) -> None:
    client = client_for(dev_env.client, settings)
    user_id = _user()
    # In flight for a moment (`delay`), so every request really arrives while the report runs.
    ids = [
        r.json()["jobId"]
        for r in await asyncio.gather(
            *(
                api.post("/reports", json={"userId": user_id, "reportType": "notification-history", "delay": 1500})
                for _ in range(n)
            )
        )
    ]
    assert len(set(ids)) == 1, ids
    [job_id] = set(ids)
    assert (await _report_done(api, job_id))["status"] == "completed"
    runs = [run async for run in client.list_workflows(f"WorkflowId = '{job_id}'")]
    assert len(runs) == 1, runs
    assert (await api.get(f"/jobs/{job_id}/status")).json()["attempts"] == 1
    assert report_path(settings.data_dir, job_id).is_file()


async def test_two_concurrent_identical_requests_make_one_report(api, dev_env, settings):
    await _concurrent_requests_make_one_report(api, dev_env, settings, 2)


async def test_twenty_concurrent_identical_requests_make_one_report(api, dev_env, settings):
    await _concurrent_requests_make_one_report(api, dev_env, settings, 20)


async def test_once_finished_a_new_request_makes_a_new_report(api, dev_env, settings):
    client = client_for(dev_env.client, settings)
    user_id = _user()
    first_job = await _users_job(client, settings, user_id)
    await until_final(api, first_job)
    await _visible(client, user_id, count=1, final=1)
    job_id = await _post(api, user_id)
    await _report_done(api, job_id)
    first = (await api.get(f"/reports/{job_id}/result")).json()
    first_run = (await client.get_workflow_handle(job_id).describe()).run_id
    assert first["total"] == 1

    second_job = await _users_job(client, settings, user_id)
    await until_final(api, second_job)
    await _visible(client, user_id, count=2, final=2)
    assert await _post(api, user_id) == job_id  # the same id: the one report of this user and type
    await poll(api, f"/reports/{job_id}/result", lambda b: b["generatedAt"] != first["generatedAt"])
    assert (await client.get_workflow_handle(job_id).describe()).run_id != first_run
    second = (await api.get(f"/reports/{job_id}/result")).json()
    assert second["total"] == 2 and {e["jobId"] for e in second["notifications"]} == {first_job, second_job}


async def test_a_report_calls_back_with_its_result_url_and_takes_a_then(api, smtp_sink):
    with HttpReceiver([Answer(200)]) as receiver:
        job_id = await _post(
            api,
            _user(),
            webhookUrl=receiver.url,
            then={"type": "email", "to": "ops@example.com", "subject": "Report ready", "body": "x"},
        )
        done = await _report_done(api, job_id)
        assert done["status"] == "completed" and done["next"] == f"{job_id}-then"
        status = await poll(api, f"/jobs/{job_id}/status", lambda b: b["callback"]["status"] == "delivered")
        [call] = receiver.received
        body = json.loads(call.body)
        assert body["type"] == "job.completed"
        assert body["data"] == {
            "jobId": job_id,
            "status": "completed",
            "attempts": 1,
            "resultUrl": f"/reports/{job_id}/result",
        }
        assert status["next"] == f"{job_id}-then"
    await until_final(api, f"{job_id}-then")
    [mail] = mail_for(smtp_sink.outbox, f"{job_id}-then")
    assert mail["Subject"] == "Report ready"


async def test_a_bad_report_request_is_a_400_per_field(api):
    body = assert_error(
        await api.post("/reports", json={"userId": "", "reportType": "everything", "webhookUrl": "http://10.1.2.3/x"}),
        400,
        "validation_error",
    )
    assert {d["field"] for d in body["details"]} >= {"userId", "reportType"}
    body = assert_error(
        await api.post(
            "/reports", json={"userId": "u", "reportType": "notification-history", "webhookUrl": "http://10.1.2.3/x"}
        ),
        400,
        "validation_error",
    )
    assert [d["field"] for d in body["details"]] == ["webhookUrl"]


async def test_a_report_lists_typed_notifications_sent_through_the_api(api, dev_env, settings, smtp_sink):
    client = client_for(dev_env.client, settings)
    user_id = _user()
    assert (await api.put(f"/users/{user_id}", json={"email": f"{user_id}@example.com"})).status_code in (200, 201)
    sent = await api.post("/notifications", json={"type": "welcome", "userId": user_id})
    assert sent.status_code == 202, sent.text
    job_id = sent.json()["jobId"]
    assert (await until_final(api, job_id))["status"] == "completed"
    await _visible(client, user_id, count=1, final=1)

    report_job = await _post(api, user_id)
    assert (await _report_done(api, report_job))["status"] == "completed"
    report = (await api.get(f"/reports/{report_job}/result")).json()
    [entry] = report["notifications"]
    assert entry["jobId"] == job_id and entry["type"] == "email" and entry["status"] == "completed"
