"""Preferences on the user (PUT and GET /users/{userId}): validated field by field, stored and returned;
and the bodies that name a user for a notification (`userId`, `topic`, `critical`)."""

from __future__ import annotations

import uuid

import pytest

from tests.api.helpers import assert_error

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
