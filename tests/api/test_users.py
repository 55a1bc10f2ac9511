"""Users: PUT /users/{userId} and GET /users/{userId}, kept in a workflow per user (no database)."""

from __future__ import annotations

import uuid

import pytest

from common.models import user_workflow_id
from tests.api.helpers import assert_error

USER_KEYS = {
    "userId",
    "email",
    "phone",
    "name",
    "locale",
    "optOut",
    "timezone",
    "quietHours",
    "channels",
    "topics",
    "digest",
    "createdAt",
    "updatedAt",
}
# What a PUT without preferences stores: none.
NO_PREFERENCES = {"timezone": "UTC", "quietHours": None, "topics": {}, "digest": None}


def new_user_id() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


async def test_a_user_round_trips_and_a_second_put_replaces_it(api, dev_env):
    user_id = new_user_id()
    put = await api.put(
        f"/users/{user_id}",
        json={
            "email": "ann@example.com",
            "phone": "+1 415 555 0100",
            "name": "Ann",
            "locale": "de-AT",
            "optOut": ["sms", "sms"],
        },
    )
    assert put.status_code == 200, put.text
    stored = put.json()
    assert set(stored) == USER_KEYS
    assert (
        stored | {"createdAt": None, "updatedAt": None}
        == {
            "userId": user_id,
            "email": "ann@example.com",
            "phone": "+14155550100",
            "name": "Ann",
            "locale": "de-AT",
            "optOut": ["sms"],
            "channels": {"email": True, "sms": False},
            "createdAt": None,
            "updatedAt": None,
        }
        | NO_PREFERENCES
    )
    got = await api.get(f"/users/{user_id}")
    assert got.status_code == 200 and got.json() == stored

    # PUT replaces: what the second body leaves out is gone; the creation time stays.
    again = (await api.put(f"/users/{user_id}", json={"phone": "+14155550123"})).json()
    assert "email" in again, again
    assert again["email"] is None and again["name"] is None and again["optOut"] == []
    assert again["phone"] == "+14155550123"
    assert again["createdAt"] == stored["createdAt"] and again["updatedAt"] >= stored["updatedAt"]
    assert (await api.get(f"/users/{user_id}")).json() == again

    # One workflow per user, updated in place: still one run, with two updates.
    description = await dev_env.client.get_workflow_handle(user_workflow_id(user_id)).describe()
    assert description.workflow_type == "UserWorkflow"


async def test_an_unknown_user_is_a_404(api):
    body = assert_error(await api.get(f"/users/{new_user_id()}"), 404, "not_found")
    assert "no user" in body["message"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["email", "phone"]),
        ({"name": "Only a name"}, ["email", "phone"]),
        ({"email": "not-an-address"}, ["email"]),
        ({"phone": "4155550100"}, ["phone"]),
        ({"email": "a@example.com", "locale": "not a locale"}, ["locale"]),
        ({"email": "a@example.com", "optOut": ["pigeon"]}, ["optOut.0"]),
        ({"email": "a@example.com", "name": "two\nlines"}, ["name"]),
        ({"email": "a@example.com", "nickname": "x"}, ["nickname"]),
    ],
)
async def test_invalid_users_are_refused_field_by_field(api, body, fields):
    user_id = new_user_id()
    refused = assert_error(await api.put(f"/users/{user_id}", json=body), 400, "validation_error")
    assert [d["field"] for d in refused["details"]] == fields, refused
    assert_error(await api.get(f"/users/{user_id}"), 404, "not_found")  # nothing was stored


@pytest.mark.parametrize("user_id", ["has space", "-leading-dash", "x" * 129, "semi;colon"])
async def test_a_user_id_outside_the_charset_is_refused(api, user_id):
    assert_error(await api.put(f"/users/{user_id}", json={"email": "a@example.com"}), 400, "validation_error")


async def test_a_user_id_that_is_an_email_address_is_not_in_the_workflow_id(api, dev_env):
    user_id = f"ada.{new_user_id()}@example.com"
    assert (await api.put(f"/users/{user_id}", json={"phone": "+14155550123"})).status_code == 200
    assert (await api.get(f"/users/{user_id}")).json()["userId"] == user_id
    workflow_id = user_workflow_id(user_id)
    assert "example.com" not in workflow_id and "ada" not in workflow_id
    assert (await dev_env.client.get_workflow_handle(workflow_id).describe()).workflow_type == "UserWorkflow"
