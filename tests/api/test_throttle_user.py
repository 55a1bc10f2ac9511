"""The per-user SMS count from every route that names a user: `/notify/sms` and `/jobs/sms` take an
optional `userId`, and such an SMS takes a slot of the user's hourly quota as well as the number's
(docs/api.md, Throttling). On the dev server, as tests/api/test_throttle.py."""

from __future__ import annotations

import uuid

import pytest

from common.models import NotificationInput
from common.sms_quota import quota_key
from common.temporal import client_for
from tests.api.helpers import AUTH, api_client, assert_error, new_number, until_final
from workflows.sms_quota import SmsQuotaWorkflow

LIMIT = 3


@pytest.fixture
async def limited(make_app, workers):
    async with api_client(make_app(sms_per_hour=LIMIT), headers=AUTH) as client:
        yield client


async def test_an_sms_naming_a_user_counts_against_the_users_hour_on_both_routes(limited, dev_env, settings):
    user_id = f"ada-{uuid.uuid4().hex[:8]}"
    numbers = [new_number() for _ in range(LIMIT + 1)]
    accepted = []
    for n, number in enumerate(numbers[:LIMIT]):
        route, key = ("/notify/sms", "notificationId") if n % 2 else ("/jobs/sms", "jobId")
        response = await limited.post(route, json={"phone": number, "message": "hi", "userId": user_id})
        assert response.status_code == 202, response.text
        accepted.append(response.json()[key])
    # Another number, the same user: the user's hour is full.
    for route in ("/notify/sms", "/jobs/sms"):
        refused = await limited.post(route, json={"phone": numbers[LIMIT], "message": "hi", "userId": user_id})
        body = assert_error(refused, 429, "rate_limited")
        assert "this user" in body["message"] and user_id not in body["message"]
        assert 3500 < int(refused.headers["Retry-After"]) <= 3600
    # Without the userId the number alone counts: it is free.
    alone = await limited.post("/jobs/sms", json={"phone": numbers[LIMIT], "message": "hi"})
    assert alone.status_code == 202, alone.text

    client = client_for(dev_env.client, settings)
    assert await client.get_workflow_handle(quota_key("user", user_id)).query(SmsQuotaWorkflow.used) == LIMIT
    assert await client.get_workflow_handle(quota_key("phone", numbers[LIMIT])).query(SmsQuotaWorkflow.used) == 1
    # The job keeps its user, so a redrive counts against the user again; its slots are marked taken.
    description = await client.get_workflow_handle(accepted[0]).fetch_history()
    [started] = [e for e in description.events if e.HasField("workflow_execution_started_event_attributes")]
    [request] = await client.data_converter.decode(
        started.workflow_execution_started_event_attributes.input.payloads, [NotificationInput]
    )
    assert request.sms_user_id == user_id and request.sms_slot_taken
    for job_id in accepted:
        assert (await until_final(limited, job_id))["status"] == "completed"


@pytest.mark.parametrize("user_id", ["", " ada", "a" * 129, "ada/lovelace"])
async def test_a_bad_user_id_is_a_400(limited, user_id):
    response = await limited.post("/jobs/sms", json={"phone": new_number(), "message": "hi", "userId": user_id})
    body = assert_error(response, 400, "validation_error")
    assert body["details"][0]["field"] == "userId", body
