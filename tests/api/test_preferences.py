"""Preferences on the user (PUT and GET /users/{userId}): validated field by field, stored and returned;
and the bodies that name a user for a notification (`userId`, `topic`, `critical`)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.api.helpers import ADMIN, assert_error, mail_for, poll, until_final

EMAIL = {"to": "ada@example.com", "subject": "Hi", "body": "Hello"}
SMS = {"phone": "+14155550100", "message": "Hello"}


def new_user_id() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


async def test_preferences_round_trip(api):
    user_id = new_user_id()
    body = {
        "email": "ada@example.com",
        "timezone": "Europe/Berlin",
        "quietHours": {"start": "22:00", "end": "07:00"},
        "channels": {"email": True, "sms": False},
        "topics": {"marketing": False, "orders": True},
        "digest": {"topics": ["news"], "at": "09:00"},
    }
    put = await api.put(f"/users/{user_id}", json=body)
    assert put.status_code == 200, put.text
    stored = put.json()
    assert stored["timezone"] == "Europe/Berlin" and stored["quietHours"] == {"start": "22:00", "end": "07:00"}
    assert stored["channels"] == {"email": True, "sms": False} and stored["optOut"] == ["sms"]
    assert stored["topics"] == {"marketing": False, "orders": True}
    assert stored["digest"] == {"topics": ["news"], "at": "09:00", "every": None}
    assert (await api.get(f"/users/{user_id}")).json() == stored

    # PUT replaces: preferences left out are gone.
    again = (await api.put(f"/users/{user_id}", json={"email": "ada@example.com", "digest": None})).json()
    assert again["timezone"] == "UTC" and again["quietHours"] is None and again["topics"] == {}
    assert again["channels"] == {"email": True, "sms": True} and again["digest"] is None
    every = {"email": "ada@example.com", "digest": {"topics": ["news"], "every": 3600}}
    assert (await api.put(f"/users/{user_id}", json=every)).json()["digest"]["every"] == 3600


@pytest.mark.parametrize(
    ("preferences", "fields"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, ["timezone"]),
        ({"timezone": "../../etc/passwd"}, ["timezone"]),
        ({"timezone": ""}, ["timezone"]),
        ({"quietHours": {"start": "22:00", "end": "7:00"}}, ["quietHours.end"]),
        ({"quietHours": {"start": "24:00", "end": "07:00"}}, ["quietHours.start"]),
        ({"quietHours": {"start": "22:60", "end": "07:00"}}, ["quietHours.start"]),
        ({"quietHours": {"start": "22:00"}}, ["quietHours.end"]),
        ({"channels": {"email": "no"}}, ["channels.email"]),
        ({"channels": {"pigeon": False}}, ["channels.pigeon"]),
        ({"topics": {"marketing": "off"}}, ["topics.marketing"]),
        ({"topics": {"bad topic": False}}, ["topics.bad topic.[key]"]),
        ({"digest": {"topics": ["news"], "every": 59}}, ["digest.every"]),
        ({"digest": {"topics": ["news"], "every": 86401}}, ["digest.every"]),
        ({"digest": {"topics": ["news"], "at": "9am"}}, ["digest.at"]),
        ({"digest": {"topics": ["news"]}}, ["digest"]),
        ({"digest": {"topics": ["news"], "at": "09:00", "every": 60}}, ["digest"]),
        ({"digest": {"topics": [], "at": "09:00"}}, ["digest.topics"]),
    ],
)
async def test_invalid_preferences_are_400_naming_the_field(api, preferences, fields):
    user_id = new_user_id()
    response = await api.put(f"/users/{user_id}", json={"email": "a@example.com"} | preferences)
    refused = assert_error(response, 400, "validation_error")
    assert [d["field"] for d in refused["details"]] == fields, refused
    assert_error(await api.get(f"/users/{user_id}"), 404, "not_found")


@pytest.mark.parametrize("path", ["/notify/email", "/jobs/email", "/notify/sms", "/jobs/sms"])
async def test_a_topic_needs_a_user_and_critical_is_a_boolean(api, path):
    body = EMAIL if path.endswith("email") else SMS
    refused = assert_error(await api.post(path, json=body | {"topic": "news"}), 400, "validation_error")
    assert [d["field"] for d in refused["details"]] == ["topic"]
    refused = assert_error(await api.post(path, json=body | {"critical": "yes"}), 400, "validation_error")
    assert [d["field"] for d in refused["details"]] == ["critical"]
    refused = assert_error(
        await api.post(path, json=body | {"userId": "ada", "topic": "has space"}), 400, "validation_error"
    )
    assert [d["field"] for d in refused["details"]] == ["topic"]


# ---- through the API on the dev server (PUT /users is an update-with-start) ------------------------
def _quiet_now() -> tuple[dict[str, str], datetime]:
    """Quiet hours in UTC that began a minute ago and last 9 hours; their end."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    end = start + timedelta(hours=9)
    return {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}, end


async def test_quiet_hours_defer_a_notification_and_removing_them_sends_it_at_once(api, smtp_sink):
    user_id = new_user_id()
    quiet, end = _quiet_now()
    assert (
        await api.put(f"/users/{user_id}", json={"email": "ada@example.com", "quietHours": quiet})
    ).status_code == 200
    accepted = await api.post("/notify/email", json=EMAIL | {"userId": user_id, "topic": "orders"})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["notificationId"]
    waiting = await poll(api, f"/jobs/{job_id}/status", lambda b: b["status"] == "delayed")
    assert datetime.fromisoformat(waiting["nextAttemptAt"]) == end
    assert [(d["rule"], d["outcome"], d.get("until")) for d in waiting["decisions"]] == [
        ("quiet_hours", "deferred", end.isoformat())
    ]
    assert (await api.get(f"/notifications/{job_id}")).json()["status"] == "queued"  # no "delayed" word there
    assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "delayed"

    # The user's workflow tells the waiting job: sent now, not in 9 hours.
    assert (await api.put(f"/users/{user_id}", json={"email": "ada@example.com"})).status_code == 200
    done = await until_final(api, job_id)
    assert done["status"] == "completed", done
    assert [(d["rule"], d["outcome"]) for d in done["decisions"]] == [("quiet_hours", "deferred"), ("channel", "sent")]
    assert len(mail_for(smtp_sink.outbox, job_id)) == 1


async def test_critical_notifications_are_sent_at_once_inside_quiet_hours(api, smtp_sink):
    """A `password-reset` (always critical) and a `/notify/email` with `critical: true` for a user inside quiet
    hours go out now, not at their end: no `delayed`, no `quiet_hours` decision, only the `sent` one of the last
    rule they passed (the quiet-hours rule is skipped for them, so that is `channel`). The same user's plain
    email, sent beside them, is deferred: the quiet hours were in force."""
    user_id = new_user_id()
    quiet, end = _quiet_now()
    user = {"email": f"{user_id}@example.com", "name": "Ada", "quietHours": quiet}
    assert (await api.put(f"/users/{user_id}", json=user)).status_code == 200
    plain = (await api.post("/notify/email", json=EMAIL | {"userId": user_id})).json()["notificationId"]
    reset = await api.post(
        "/notifications",
        json={"type": "password-reset", "userId": user_id, "data": {"resetUrl": "https://example.com/r"}},
    )
    assert reset.status_code == 202, reset.text
    urgent = await api.post("/notify/email", json=EMAIL | {"userId": user_id, "critical": True})
    assert urgent.status_code == 202, urgent.text
    for job_id in (reset.json()["jobId"], urgent.json()["notificationId"]):
        seen: list[dict] = []
        done = await until_final(api, job_id, seen=seen)
        assert done["status"] == "completed" and done["attempts"] == 1, done
        assert "delayed" not in {body["status"] for body in seen} and "nextAttemptAt" not in done, seen
        assert [(d["rule"], d["outcome"]) for d in done["decisions"]] == [("channel", "sent")], done
        assert len(mail_for(smtp_sink.outbox, job_id)) == 1
    assert (await api.get(f"/notifications/{reset.json()['jobId']}")).json()["status"] == "success"
    [mail] = mail_for(smtp_sink.outbox, reset.json()["jobId"])
    assert mail["To"] == f"{user_id}@example.com" and mail["Subject"] == "Reset your password"

    waiting = await poll(api, f"/jobs/{plain}/status", lambda b: b["status"] == "delayed")
    assert datetime.fromisoformat(waiting["nextAttemptAt"]) == end
    assert [(d["rule"], d["outcome"]) for d in waiting["decisions"]] == [("quiet_hours", "deferred")]
    assert not mail_for(smtp_sink.outbox, plain)
    assert (await api.post(f"/jobs/{plain}/cancel")).status_code == 202  # not left waiting 9 hours


async def test_an_opted_out_sms_is_suppressed_counted_and_not_a_dead_letter(api):
    user_id = new_user_id()
    body = {"email": "ada@example.com", "channels": {"email": True, "sms": False}}
    assert (await api.put(f"/users/{user_id}", json=body)).status_code == 200
    job_id = (await api.post("/jobs/sms", json=SMS | {"userId": user_id})).json()["jobId"]
    done = await until_final(api, job_id)
    assert done["status"] == "suppressed" and done["suppressedReason"] == "channel_opt_out", done
    assert (await api.get(f"/notifications/{job_id}")).json()["status"] == "suppressed"
    assert_error(await api.post(f"/jobs/{job_id}/release"), 409, "not_waiting")
    # Counted (visibility catches up within moments), under its own word.
    for _ in range(100):
        stats = (await api.get("/admin/stats", headers=ADMIN)).json()
        if stats["counts"]["sms"]["suppressed"] >= 1:
            break
        await asyncio.sleep(0.1)
    assert stats["counts"]["sms"]["suppressed"] >= 1, stats
    dead = (await api.get("/admin/dlq", params={"type": "sms", "limit": 100}, headers=ADMIN)).json()
    assert job_id not in [item["jobId"] for item in dead["items"]]


async def test_release_runs_a_delayed_job_now_and_refuses_what_does_not_wait(api, smtp_sink):
    job_id = (await api.post("/jobs/email", json=EMAIL | {"delay": 3_600_000})).json()["jobId"]
    released = await api.post(f"/jobs/{job_id}/release")
    assert released.status_code == 202, released.text
    assert released.json() == {"jobId": job_id, "released": True, "statusUrl": f"/jobs/{job_id}/status"}
    done = await until_final(api, job_id)
    assert done["status"] == "completed" and [d["rule"] for d in done["decisions"]] == ["release"]
    assert len(mail_for(smtp_sink.outbox, job_id)) == 1
    assert_error(await api.post(f"/jobs/{job_id}/release"), 409, "not_waiting")  # final
    assert_error(await api.post("/jobs/email-00000000000000000000/release"), 404, "not_found")


async def test_release_ends_a_deliver_at_wait_too(api, smtp_sink):
    """Not only a `delay`: a job due at a `deliverAt` an hour ahead, released, is sent now, and says so."""
    deliver_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    accepted = await api.post("/jobs/email", json=EMAIL | {"deliverAt": deliver_at.isoformat()})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["jobId"]
    waiting = await poll(api, f"/jobs/{job_id}/status", lambda b: b["status"] == "delayed")
    assert datetime.fromisoformat(waiting["nextAttemptAt"]) == deliver_at and waiting["decisions"] == []
    released = await api.post(f"/jobs/{job_id}/release")
    assert released.status_code == 202, released.text
    assert released.json() == {"jobId": job_id, "released": True, "statusUrl": f"/jobs/{job_id}/status"}
    done = await until_final(api, job_id)  # within the poll's 20 s, not in an hour
    assert done["status"] == "completed" and "nextAttemptAt" not in done, done
    assert [(d["rule"], d["outcome"]) for d in done["decisions"]] == [("release", "released")]
    assert datetime.fromisoformat(done["decisions"][0]["at"]) < deliver_at
    assert len(mail_for(smtp_sink.outbox, job_id)) == 1
    assert_error(await api.post(f"/jobs/{job_id}/release"), 409, "not_waiting")
