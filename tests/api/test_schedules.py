"""Schedules end to end, against the real dev server (the time-skipping server has no schedules).

No test waits for a cron time: runs are started with the admin trigger, which runs the schedule's
real action, so what a trigger starts is what the cron would start.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import ScheduleOverlapPolicy
from temporalio.common import SearchAttributeKey

from common.builtin_schedules import ensure_builtin_schedules
from common.models import STATE_MEMO_KEY
from common.schedules import BUILTIN_SCHEDULES, cron_of
from devstack.smtp_sink import read_outbox
from tests.api.helpers import ADMIN, AUTH, api_client, assert_error, poll, schema_problems, until_final
from tests.support.temporal import herald_client

ROOT = Path(__file__).resolve().parents[2]
EMAIL_JOB = {"type": "email", "to": "ada@example.com", "subject": "Weekly digest", "body": "Your week"}
# Never due while the tests run (midnight on January 1st): runs come from triggers only.
YEARLY = "0 0 1 1 *"
BUILTINS = {
    "daily-cleanup": ("0 0 * * *", "delete_temp"),
    "daily-log-cleanup": ("0 0 * * *", "remove_old_logs"),
    "token-cleanup": ("0 2 * * *", "expire_sessions"),
}


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert value.tzinfo is not None, text
    return value


async def _listed(admin, ids: set[str]) -> list[dict]:
    """GET /admin/schedules until every one of `ids` is in it (the list lags a moment behind a change)."""
    body = await poll(admin, "/admin/schedules", lambda b: ids <= {i["id"] for i in b["items"]}, deadline_s=10)
    return body["items"]


@pytest.fixture
async def builtins(dev_env, settings) -> None:
    await ensure_builtin_schedules(herald_client(dev_env), settings)


@pytest.fixture
async def admin(app, workers):
    """The API with the admin token."""
    async with api_client(app, headers=ADMIN) as client:
        yield client


async def _create(api, body: dict) -> str:
    response = await api.post("/schedules", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {"scheduleId", "nextRunAt"}
    assert response.headers["location"] == f"/schedules/{created['scheduleId']}"
    return created["scheduleId"]


# ---- the built-in schedules ------------------------------------------------------------------
async def test_two_workers_starting_together_create_each_builtin_once(dev_env, settings, admin):
    outcomes = await asyncio.gather(
        ensure_builtin_schedules(herald_client(dev_env), settings),
        ensure_builtin_schedules(herald_client(dev_env), settings),
    )
    for sid in BUILTINS:
        # Whoever came first created it (or an earlier test did); the other found it, which is success.
        assert sorted(o[sid] for o in outcomes) in (["created", "unchanged"], ["unchanged", "unchanged"]), outcomes
    # A later start changes nothing.
    assert await ensure_builtin_schedules(herald_client(dev_env), settings) == dict.fromkeys(BUILTINS, "unchanged")

    ids = [s.id async for s in await herald_client(dev_env).list_schedules()]
    for sid in BUILTINS:
        assert ids.count(sid) == 1, ids
    items = {i["id"]: i for i in await _listed(admin, set(BUILTINS))}
    for sid, (cron, _) in BUILTINS.items():
        item = items[sid]
        assert item["cron"] == cron and item["timezone"] == "UTC" and item["builtin"] is True, item
        assert item["paused"] is False
        due = _instant(item["nextRunAt"])
        assert timedelta(0) < due - datetime.now(UTC) <= timedelta(days=1)
        assert (due.hour, due.minute) == (int(cron.split()[1]), 0)


async def test_a_worker_process_start_ensures_the_builtins(dev_env, settings, builtins, tmp_path):
    """worker.py's start-up hook, in a real second worker process: it finds them all and changes nothing."""
    env = os.environ | {
        "HERALD_TEMPORAL_ADDRESS": settings.temporal_address,
        "HERALD_API_KEYS": "unused",
        "HERALD_SMTP_PORT": str(settings.smtp_port),
        "HERALD_SMS_GATEWAY_URL": settings.sms_gateway_url,
        "HERALD_WEBHOOK_SECRET": settings.webhook_secret or "",
        "HERALD_DATA_DIR": str(tmp_path),
        "HERALD_ENCRYPTION_KEY": settings.encryption_key or "",
        "HERALD_TEMP_DIR": str(settings.temp_dir),
        "HERALD_LOG_DIR": str(settings.log_dir),
        "HERALD_SESSION_DIR": str(settings.session_dir),
        "HERALD_WORKER_METRICS_PORT": "0",
        # What a run's input carries from the settings: the same as the first worker's, so nothing to update.
        "HERALD_SEND_TIMEOUT_SECONDS": str(settings.send_timeout_seconds),
        "HERALD_RETRY_AFTER_CAP_SECONDS": str(settings.retry_after_cap_seconds),
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "worker.py", env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    lines: list[str] = []
    try:
        end = time.monotonic() + 60
        while not any("built-in schedules" in line for line in lines):
            assert time.monotonic() < end, lines
            line = await asyncio.wait_for(worker.stdout.readline(), timeout=max(end - time.monotonic(), 0.1))
            assert line, f"the worker exited: {lines}"
            lines.append(line.decode())
    finally:
        worker.terminate()
        await worker.wait()
    said = next(line for line in lines if "built-in schedules" in line)
    for sid in BUILTINS:
        assert f"{sid} unchanged" in said, said
    ids = [s.id async for s in await herald_client(dev_env).list_schedules()]
    assert all(ids.count(sid) == 1 for sid in BUILTINS), ids


async def test_builtins_follow_a_new_time_zone_and_keep_an_operators_pause(dev_env, settings, api, builtins):
    client = herald_client(dev_env)
    await client.get_schedule_handle("daily-cleanup").pause(note="held by an operator")
    berlin = settings.model_copy(update={"schedule_timezone": "Europe/Berlin"})
    try:
        assert await ensure_builtin_schedules(client, berlin) == dict.fromkeys(BUILTINS, "updated")
        for sid, (cron, _) in BUILTINS.items():
            description = await client.get_schedule_handle(sid).describe()
            assert description.schedule.spec.time_zone_name == "Europe/Berlin"
            assert cron_of(description.schedule.spec) == cron
            assert description.schedule.state.paused is (sid == "daily-cleanup")
            if sid != "daily-cleanup":
                # The next run by Berlin's clock, once the schedule has taken the change in.
                body = await poll(
                    api,
                    f"/schedules/{sid}",
                    lambda b, cron=cron: (
                        _instant(b["nextRunAt"]).astimezone(ZoneInfo("Europe/Berlin")).hour == int(cron.split()[1])
                    ),
                    deadline_s=10,
                )
                assert body["timezone"] == "Europe/Berlin" and body["cron"] == cron
        assert await ensure_builtin_schedules(client, berlin) == dict.fromkeys(BUILTINS, "unchanged")
    finally:
        assert await ensure_builtin_schedules(client, settings) == dict.fromkeys(BUILTINS, "updated")
        # The scheduler applies an update a moment after the call returns; an unpause sent before
        # that would be undone by the update (which keeps the pause it read), so wait for it first.
        await poll(api, "/schedules/daily-cleanup", lambda b: b["timezone"] == "UTC", deadline_s=10)
        await client.get_schedule_handle("daily-cleanup").unpause()
    back = await poll(api, "/schedules/daily-cleanup", lambda b: not b["paused"], deadline_s=10)
    assert back["timezone"] == "UTC" and back["nextRunAt"] is not None
    description = await client.get_schedule_handle("daily-cleanup").describe()
    assert description.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP


async def test_token_cleanup_trigger_removes_expired_sessions(api, builtins, settings):
    settings.session_dir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    expired = settings.session_dir / f"expired-{tag}.json"
    live = settings.session_dir / f"live-{tag}.json"
    expired.write_text(json.dumps({"expiresAt": "2020-01-01T00:00:00Z"}))
    live.write_text(json.dumps({"expiresAt": time.time() + 3600}))

    response = await api.post("/admin/schedules/token-cleanup/trigger", headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "token-cleanup" and body["job"] == {"type": "cleanup", "task": "expire_sessions"}
    job_id = body["lastJobId"]
    assert job_id.startswith("token-cleanup-"), body
    assert abs(_instant(body["lastRunAt"]) - datetime.now(UTC)) < timedelta(seconds=30)

    status = await until_final(api, job_id)
    assert status["status"] == "completed" and status["type"] == "cleanup", status
    assert status["id"] == job_id
    assert expired.name in status["result"]["removed"] and live.name not in status["result"]["removed"]
    assert not expired.exists() and live.exists()
    assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "completed"


# ---- clients' schedules ----------------------------------------------------------------------
async def test_a_client_schedule_runs_its_job_as_a_job_of_its_own(api, dev_env, smtp_sink):
    to = f"digest-{uuid.uuid4().hex[:8]}@example.com"
    schedule_id = await _create(
        api,
        {
            "cron": "30 9 * * 1-5",
            "timezone": "America/New_York",
            "job": EMAIL_JOB | {"to": to, "attempts": 2, "priority": 2},
        },
    )
    assert schedule_id.startswith("schedule-")

    got = await api.get(f"/schedules/{schedule_id}")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["id"] == schedule_id and body["cron"] == "30 9 * * 1-5" and body["timezone"] == "America/New_York"
    assert body["paused"] is False and body["builtin"] is False
    assert body["job"] == EMAIL_JOB | {"to": to, "attempts": 2, "priority": 2}
    assert "lastRunAt" not in body and "lastJobId" not in body
    due = _instant(body["nextRunAt"]).astimezone(ZoneInfo("America/New_York"))
    assert (due.hour, due.minute) == (9, 30) and due.weekday() < 5

    triggered = (await api.post(f"/admin/schedules/{schedule_id}/trigger", headers=ADMIN)).json()
    job_id = triggered["lastJobId"]
    assert job_id.startswith(f"{schedule_id}-")
    # Durably a Herald job from its first moment: the memo and search attributes the API's own start sets.
    handle = herald_client(dev_env).get_workflow_handle(job_id)
    description = await handle.describe()
    assert (await description.memo())[STATE_MEMO_KEY]["kind"] == "email"
    assert description.typed_search_attributes.get(SearchAttributeKey.for_keyword("HeraldJobType")) == "email"

    status = await until_final(api, job_id)
    assert status["status"] == "completed" and status["id"] == job_id and status["maxAttempts"] == 2, status
    [mail] = [m for m in read_outbox(smtp_sink.outbox) if m["To"] == to]
    assert mail["Subject"] == "Weekly digest" and mail.get_content().strip() == "Your week"
    notification = (await api.get(f"/notifications/{job_id}")).json()
    assert notification["status"] == "success" and notification["recipient"] == to
    assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "completed"

    again = (await api.get(f"/schedules/{schedule_id}")).json()
    assert again["lastJobId"] == job_id
    assert (await api.delete(f"/schedules/{schedule_id}")).status_code == 200


async def test_a_scheduled_email_has_a_whole_message_id_of_its_own(api, admin, smtp_sink):
    to = f"msgid-{uuid.uuid4().hex[:8]}@example.com"
    schedule_id = await _create(api, {"cron": YEARLY, "job": EMAIL_JOB | {"to": to}})
    try:
        job_id = (await admin.post(f"/admin/schedules/{schedule_id}/trigger")).json()["lastJobId"]
        status = await until_final(api, job_id)
        [mail] = [m for m in read_outbox(smtp_sink.outbox) if m["To"] == to]
        # A provider de-duplicates on it: cut at the hour, every run within that hour would share it.
        assert mail["Message-ID"].startswith(f"<{schedule_id}-") and mail["Message-ID"].endswith("@herald>")
        assert status["result"]["providerId"] == mail["Message-ID"]
    finally:
        await api.delete(f"/schedules/{schedule_id}")


async def test_pause_and_unpause_show_in_get_and_the_list(api, admin, builtins):
    schedule_id = await _create(api, {"cron": YEARLY, "job": {"type": "cleanup", "task": "delete_temp"}})
    paused = await api.post(f"/admin/schedules/{schedule_id}/pause", headers=ADMIN)
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True and paused.json()["nextRunAt"] is None
    body = (await api.get(f"/schedules/{schedule_id}")).json()
    assert body["paused"] is True and body["nextRunAt"] is None and body["timezone"] == "UTC"
    await poll(
        admin,
        "/admin/schedules",
        lambda b: any(i["id"] == schedule_id and i["paused"] for i in b["items"]),
        deadline_s=10,
    )

    # An operator can still run a paused schedule's job by hand.
    triggered = (await admin.post(f"/admin/schedules/{schedule_id}/trigger")).json()
    assert triggered["paused"] is True and triggered["lastJobId"].startswith(f"{schedule_id}-")
    assert (await until_final(api, triggered["lastJobId"]))["status"] == "completed"

    resumed = (await api.post(f"/admin/schedules/{schedule_id}/unpause", headers=ADMIN)).json()
    assert resumed["paused"] is False
    assert _instant(resumed["nextRunAt"]).astimezone(UTC).strftime("%m-%d %H:%M") == "01-01 00:00"
    assert (await api.get(f"/schedules/{schedule_id}")).json()["paused"] is False
    listed = await poll(
        admin,
        "/admin/schedules",
        lambda b: any(i["id"] == schedule_id and not i["paused"] for i in b["items"]),
        deadline_s=10,
    )
    # The built-in ones first, then the others by id.
    ids = [i["id"] for i in listed["items"]]
    assert ids[: len(BUILTIN_SCHEDULES)] == [s.id for s in BUILTIN_SCHEDULES], ids
    assert ids[len(BUILTIN_SCHEDULES) :] == sorted(ids[len(BUILTIN_SCHEDULES) :])
    assert (await api.delete(f"/schedules/{schedule_id}")).status_code == 200


async def test_a_deleted_schedule_is_gone(api, builtins):
    schedule_id = await _create(api, {"cron": YEARLY, "job": {"type": "sms", "phone": "+14155550100", "message": "hi"}})
    response = await api.delete(f"/schedules/{schedule_id}")
    assert response.status_code == 200 and response.json() == {"scheduleId": schedule_id, "deleted": True}
    assert_error(await api.get(f"/schedules/{schedule_id}"), 404, "not_found")
    assert_error(await api.delete(f"/schedules/{schedule_id}"), 404, "not_found")
    for action in ("trigger", "pause", "unpause"):
        assert_error(await api.post(f"/admin/schedules/{schedule_id}/{action}", headers=ADMIN), 404, "not_found")
    assert_error(await api.get("/schedules/no-such-schedule"), 404, "not_found")
    # The built-in ones are the operators': a client cannot delete them.
    assert_error(await api.delete("/schedules/token-cleanup"), 409, "builtin_schedule")
    assert (await api.get("/schedules/token-cleanup")).status_code == 200


# ---- refusals --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, fields",
    [
        ({"cron": "61 * * * *", "job": EMAIL_JOB}, ["cron"]),
        ({"cron": "* * * *", "job": EMAIL_JOB}, ["cron"]),
        ({"cron": "@daily", "job": EMAIL_JOB}, ["cron"]),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus_Mons", "job": EMAIL_JOB}, ["timezone"]),
        ({"cron": "0 9 * * *", "job": EMAIL_JOB | {"to": "not-an-address"}}, ["job.to"]),
        ({"cron": "0 9 * * *", "job": EMAIL_JOB | {"delay": 1000}}, ["job.delay"]),
        ({"cron": "0 9 * * *", "job": EMAIL_JOB | {"deliverAt": "2030-01-01T09:00:00Z"}}, ["job.deliverAt"]),
        ({"cron": "0 9 * * *", "job": {"type": "fax", "number": "1"}}, ["job.type"]),
        ({"cron": "0 9 * * *", "job": {"to": "ada@example.com"}}, ["job.type"]),
        (
            {"cron": "0 9 * * *", "job": {"type": "sms", "phone": "12345", "message": "hi", "attempts": 99}},
            ["job.phone", "job.attempts"],
        ),
        ({"cron": "0 9 * * *", "job": {"type": "cleanup", "task": "format_disk"}}, ["job.task"]),
        ({"cron": "0 9 * * *", "job": EMAIL_JOB | {"dealy": 5}}, ["job.dealy"]),
        ({"cron": "0 9 * * *", "job": {"type": "webhook", "url": "http://10.0.0.7/hook", "data": {}}}, ["job.url"]),
        ({"cron": "0 9 * * *", "job": EMAIL_JOB | {"webhookUrl": "http://169.254.169.254/"}}, ["job.webhookUrl"]),
        ({"cron": "0 9 * * *"}, ["job"]),
        ({"cron": "bad", "timezone": "Nowhere", "job": EMAIL_JOB | {"to": "x"}}, ["cron", "timezone", "job.to"]),
    ],
)
async def test_a_bad_schedule_is_a_400_naming_the_field(api, body, fields):
    details = assert_error(await api.post("/schedules", json=body), 400, "validation_error")["details"]
    assert [d["field"] for d in details] == fields, details


async def test_keys(anon, api):
    body = {"cron": YEARLY, "job": EMAIL_JOB}
    assert_error(await anon.post("/schedules", json=body), 401, "unauthorized")
    assert_error(await anon.post("/schedules", json={"cron": "bad"}), 401, "unauthorized")
    assert_error(await anon.get("/schedules/daily-cleanup"), 401, "unauthorized")
    assert_error(await anon.delete("/schedules/daily-cleanup"), 401, "unauthorized")
    assert_error(await api.post("/schedules", json=body, headers=ADMIN), 401, "unauthorized")
    for method, path in [
        ("get", "/admin/schedules"),
        ("post", "/admin/schedules/daily-cleanup/trigger"),
        ("post", "/admin/schedules/daily-cleanup/pause"),
        ("post", "/admin/schedules/daily-cleanup/unpause"),
    ]:
        assert_error(await anon.request(method, path), 401, "unauthorized")
        assert_error(await anon.request(method, path, headers=AUTH), 403, "forbidden")


async def test_every_schedule_answer_matches_the_published_schema(api, admin, anon, builtins):
    spec = (await anon.get("/openapi.json")).json()

    def check(response, method: str, path: str) -> dict:
        answer = spec["paths"][path][method]["responses"][str(response.status_code)]
        body = response.json()
        assert schema_problems(spec, answer["content"]["application/json"]["schema"], body) == [], (path, body)
        return body

    one = "/schedules/{schedule_id}"
    created = check(await api.post("/schedules", json={"cron": YEARLY, "job": EMAIL_JOB}), "post", "/schedules")
    schedule_id = created["scheduleId"]
    check(await api.get(f"/schedules/{schedule_id}"), "get", one)
    for action in ("pause", "unpause", "trigger"):
        body = check(
            await admin.post(f"/admin/schedules/{schedule_id}/{action}"),
            "post",
            f"/admin/schedules/{{schedule_id}}/{action}",
        )
    assert "lastRunAt" in body and "lastJobId" in body
    await until_final(api, body["lastJobId"])
    check(await api.get(f"/schedules/{schedule_id}"), "get", one)
    await _listed(admin, {schedule_id})
    check(await admin.get("/admin/schedules"), "get", "/admin/schedules")
    check(await api.delete(f"/schedules/{schedule_id}"), "delete", one)
    check(await api.delete(f"/schedules/{schedule_id}"), "delete", one)
    check(await api.delete("/schedules/daily-cleanup"), "delete", one)
    check(await api.post("/schedules", json={"cron": "x", "job": {}}), "post", "/schedules")
    check(await anon.get("/admin/schedules", headers=AUTH), "get", "/admin/schedules")
