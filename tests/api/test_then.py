"""Chained jobs: a job's `then` is started as a child workflow once the job has completed, never
after a failure or a cancel; it is a job of its own (`<jobId>-then`) on every status route, and the
parent's status names it in `next`."""

from __future__ import annotations

import asyncio

from temporalio.client import WorkflowExecutionStatus

from tests.api.helpers import assert_error, mail_for, poll, until_final
from tests.support.http_receiver import Answer


def _email(to: str, subject: str, **more) -> dict:
    return {"to": to, "subject": subject, "body": f"body of {subject}", **more}


async def _job(response) -> str:
    assert response.status_code == 202, response.text
    body = response.json()
    return body.get("jobId") or body["notificationId"]


async def _parent_done(api, job_id: str) -> dict:
    """The parent's final state: its run has closed (or calls back), so `next` is settled."""
    return await until_final(api, job_id)


async def test_then_starts_after_success_and_the_parent_names_it(api, dev_env, smtp_sink):
    job_id = await _job(
        await api.post(
            "/jobs/email",
            json=_email(
                "first@example.com", "Step one", then={"type": "email", **_email("second@example.com", "Step two")}
            ),
        )
    )
    status = await _parent_done(api, job_id)
    assert status["status"] == "completed", status
    follow_up = f"{job_id}-then"
    assert status["next"] == follow_up
    assert (await api.get(f"/jobs/{job_id}")).json()["next"] == follow_up
    assert (await api.get(f"/notifications/{job_id}")).json()["next"] == follow_up

    # A job of its own on every status route, delivered under its own id.
    child = await until_final(api, follow_up)
    assert child["status"] == "completed" and child["type"] == "email" and child["id"] == follow_up, child
    assert "next" not in child
    assert (await api.get(f"/jobs/{follow_up}")).json()["status"] == "completed"
    assert (await api.get(f"/notifications/{follow_up}")).json()["recipient"] == "second@example.com"
    [mail] = mail_for(smtp_sink.outbox, follow_up)
    assert mail["To"] == "second@example.com" and mail["Subject"] == "Step two"
    [first] = mail_for(smtp_sink.outbox, job_id)
    assert first["Subject"] == "Step one"
    # The child outlives its parent (ABANDON) and is the parent's child in Temporal.
    description = await dev_env.client.get_workflow_handle(follow_up).describe()
    assert description.parent_id == job_id
    assert description.status == WorkflowExecutionStatus.COMPLETED


async def test_no_then_after_a_failure(api, dev_env, sms_gateway, smtp_sink):
    phone = "+14155550181"
    sms_gateway.script(phone, [Answer(400, {"error": "bad number"})])
    job_id = await _job(
        await api.post(
            "/notify/sms",
            json={"phone": phone, "message": "x", "then": {"type": "email", **_email("never@example.com", "Never")}},
        )
    )
    status = await poll(api, f"/notifications/{job_id}", lambda b: b["status"] == "failed")
    assert "next" not in status
    assert (await dev_env.client.get_workflow_handle(job_id).describe()).status == WorkflowExecutionStatus.FAILED
    assert_error(await api.get(f"/jobs/{job_id}-then/status"), 404, "not_found")
    assert mail_for(smtp_sink.outbox, f"{job_id}-then") == []


async def test_no_then_after_a_cancel(api, dev_env, smtp_sink):
    job_id = await _job(
        await api.post(
            "/jobs/email",
            json=_email("late@example.com", "Later", delay=60000, then={"type": "cleanup", "task": "delete_temp"}),
        )
    )
    assert (await api.post(f"/jobs/{job_id}/cancel")).status_code == 202
    status = await until_final(api, job_id)
    assert status["status"] == "cancelled" and "next" not in status
    assert (await dev_env.client.get_workflow_handle(job_id).describe()).status == WorkflowExecutionStatus.CANCELED
    assert_error(await api.get(f"/jobs/{job_id}-then"), 404, "not_found")


async def test_nested_then_runs_each_level_in_turn(api, smtp_sink, sms_gateway):
    job_id = await _job(
        await api.post(
            "/jobs/cleanup",
            json={
                "task": "delete_temp",
                "then": {
                    "type": "email",
                    **_email("level1@example.com", "Level one"),
                    "then": {"type": "sms", "phone": "+14155550182", "message": "level two"},
                },
            },
        )
    )
    assert (await _parent_done(api, job_id))["next"] == f"{job_id}-then"
    level1 = await until_final(api, f"{job_id}-then")
    assert level1["status"] == "completed" and level1["next"] == f"{job_id}-then-then", level1
    level2 = await until_final(api, f"{job_id}-then-then")
    assert level2["status"] == "completed" and level2["type"] == "sms" and "next" not in level2, level2
    [mail] = mail_for(smtp_sink.outbox, f"{job_id}-then")
    assert mail["Subject"] == "Level one"
    # Each level's idempotency key is its own job id.
    [record] = [r for r in sms_gateway.recorded() if r["idempotencyKey"] == f"{job_id}-then-then"]
    assert record["to"] == "+14155550182" and record["body"] == "level two"


async def test_a_bad_then_is_a_400_on_its_field(api):
    cases = [
        ({"type": "email", "to": "not-an-address", "subject": "s", "body": "b"}, "then.to"),
        ({"type": "email", **_email("a@example.com", "s"), "then": {"type": "fax"}}, "then.then.type"),
        ({"type": "sms", "message": "m"}, "then.phone"),
        ({"to": "a@example.com"}, "then.type"),
        ({"type": "webhook", "url": "http://169.254.169.254/latest", "data": {}}, "then.url"),
        ({"type": "cleanup", "task": "delete_temp", "webhookUrl": "http://10.0.0.1/hook"}, "then.webhookUrl"),
        ({"type": "cleanup", "task": "delete_temp", "attempts": 0}, "then.attempts"),
    ]
    for then, field in cases:
        body = assert_error(
            await api.post("/jobs/email", json=_email("x@example.com", "x", then=then)), 400, "validation_error"
        )
        assert field in [d["field"] for d in body["details"]], (field, body)
    # At most five chained: the sixth is refused on the outermost `then`, before any level is read.
    chain: dict = {"type": "cleanup", "task": "delete_temp"}
    for _ in range(5):
        chain = {"type": "cleanup", "task": "delete_temp", "then": chain}
    body = assert_error(
        await api.post("/jobs/cleanup", json={"task": "delete_temp", "then": chain}), 400, "validation_error"
    )
    assert [d["field"] for d in body["details"]] == ["then"], body
    # A chain of five is fine (a 202 is not needed here: it would start jobs; the model accepts it).
    from api.jobs.models import CleanupJob

    assert CleanupJob.model_validate({"task": "delete_temp", "then": chain["then"]}).then is not None


async def test_then_survives_concurrent_parents(api, smtp_sink):
    """Several parents at once each start exactly their own follow-up."""
    responses = await asyncio.gather(
        *(
            api.post(
                "/jobs/email",
                json=_email(
                    f"p{n}@example.com",
                    f"Parent {n}",
                    then={"type": "email", **_email(f"c{n}@example.com", f"Child {n}")},
                ),
            )
            for n in range(5)
        )
    )
    ids = [await _job(response) for response in responses]
    for n, job_id in enumerate(ids):
        assert (await _parent_done(api, job_id))["next"] == f"{job_id}-then"
        await until_final(api, f"{job_id}-then")
        [mail] = mail_for(smtp_sink.outbox, f"{job_id}-then")
        assert mail["Subject"] == f"Child {n}"


async def test_a_scheduled_run_chains_its_own_follow_up(api, smtp_sink):
    """A schedule's job may carry `then`: the run (its job id filled in by the workflow, unknown to
    the API) starts `<runId>-then`, so every run's follow-up has an id of its own."""
    from activities.email import message_id
    from devstack.smtp_sink import read_outbox
    from tests.api.helpers import ADMIN

    created = await api.post(
        "/schedules",
        json={
            "cron": "0 0 1 1 *",
            "job": {
                "type": "cleanup",
                "task": "delete_temp",
                "then": {"type": "email", **_email("digest@example.com", "After the cleanup")},
            },
        },
    )
    assert created.status_code == 201, created.text
    schedule_id = created.json()["scheduleId"]
    try:
        assert (await api.get(f"/schedules/{schedule_id}")).json()["job"]["then"]["subject"] == "After the cleanup"
        run = (await api.post(f"/admin/schedules/{schedule_id}/trigger", headers=ADMIN)).json()["lastJobId"]
        assert run.startswith(f"{schedule_id}-")
        status = await until_final(api, run)
        assert status["status"] == "completed" and status["next"] == f"{run}-then", status
        child = await until_final(api, f"{run}-then")
        assert child["status"] == "completed" and child["id"] == f"{run}-then"
        [mail] = [m for m in read_outbox(smtp_sink.outbox) if m["Message-ID"] == message_id(f"{run}-then")]
        assert mail["Subject"] == "After the cleanup" and mail["To"] == "digest@example.com"
    finally:
        await api.delete(f"/schedules/{schedule_id}")


async def test_a_failed_follow_up_is_a_dead_letter_of_its_own_and_redrives(api, sms_gateway):
    from tests.api.helpers import ADMIN

    phone = "+14155550183"
    sms_gateway.script(phone, [Answer(400, {"error": "not yet"}), Answer(200, {"id": "sms-ok"})])
    job_id = await _job(
        await api.post(
            "/jobs/cleanup", json={"task": "delete_temp", "then": {"type": "sms", "phone": phone, "message": "chained"}}
        )
    )
    follow_up = (await _parent_done(api, job_id))["next"]
    assert (await until_final(api, follow_up))["status"] == "failed"
    response = await api.post(f"/admin/dlq/{follow_up}/retry", headers=ADMIN)
    assert response.status_code == 202, response.text
    status = await poll(api, f"/jobs/{follow_up}/status", lambda b: b["status"] == "completed")
    assert status["result"]["providerId"] == "sms-ok"
    # Both runs sent under the follow-up's own id as idempotency key.
    assert [c.idempotency_key for c in sms_gateway.calls_to(phone)] == [follow_up, follow_up]
