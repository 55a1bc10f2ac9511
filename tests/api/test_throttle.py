"""SMS throttling end to end on the dev server: HERALD_SMS_PER_HOUR per number (and per user) per hour.

The hour passing is tested on the time-skipping server (tests/workflows/test_sms_quota.py): it has
no update-with-start, which the API uses, and the dev server's clock cannot be skipped.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from api.core.errors import ApiError
from api.jobs.throttle import quota_key, reserve_sms
from common.temporal import client_for
from tests.api.helpers import AUTH, api_client, assert_error, new_number, poll
from workflows.sms_quota import SmsQuotaWorkflow

LIMIT = 10


@pytest.fixture
async def limited(make_app, workers):
    async with api_client(make_app(sms_per_hour=LIMIT), headers=AUTH) as client:
        yield client


async def _used(dev_env, settings, key: str) -> int:
    return await client_for(dev_env.client, settings).get_workflow_handle(key).query(SmsQuotaWorkflow.used)


async def test_the_11th_sms_to_a_number_in_an_hour_is_a_429_and_sends_nothing(limited, dev_env, settings, sms_gateway):
    number = new_number()
    job_ids = []
    for n in range(LIMIT):
        # Both SMS routes count against the same number.
        route, key = ("/notify/sms", "notificationId") if n % 2 else ("/jobs/sms", "jobId")
        response = await limited.post(route, json={"phone": number, "message": f"code {n}"})
        assert response.status_code == 202, response.text
        job_ids.append(response.json()[key])

    for route in ("/notify/sms", "/jobs/sms"):
        refused = await limited.post(route, json={"phone": number, "message": "one too many"})
        body = assert_error(refused, 429, "rate_limited")
        retry_after = int(refused.headers["Retry-After"])
        assert 3500 < retry_after <= 3600, retry_after  # when the first of the ten expires
        assert f"at most {LIMIT} per hour" in body["message"]
        assert f"a slot frees in {retry_after} s (at 20" in body["message"]  # seconds, and the instant
        assert number not in body["message"]  # masked
    # A `then` SMS counts too: an email whose follow-up texts the number is refused whole.
    chained = await limited.post(
        "/jobs/email",
        json={
            "to": "a@example.com",
            "subject": "s",
            "body": "b",
            "then": {"type": "sms", "phone": number, "message": "x"},
        },
    )
    assert_error(chained, 429, "rate_limited")

    for job_id in job_ids:
        await poll(limited, f"/jobs/{job_id}/status", lambda b: b["status"] == "completed")
    await asyncio.sleep(0.5)  # time for an 11th job, had one been started, to reach the gateway
    assert len(sms_gateway.calls_to(number)) == LIMIT
    assert await _used(dev_env, settings, quota_key("phone", number)) == LIMIT
    # Another number is not affected.
    assert (await limited.post("/notify/sms", json={"phone": new_number(), "message": "hi"})).status_code == 202


async def test_a_user_is_throttled_across_numbers_and_a_refusal_takes_nothing(dev_env, settings, workers):
    client = client_for(dev_env.client, settings)
    limited = settings.model_copy(update={"sms_per_hour": LIMIT})
    user_id = f"u-{random.randbytes(6).hex()}"
    numbers = [new_number() for _ in range(LIMIT + 1)]
    for number in numbers[:LIMIT]:
        assert await reserve_sms(client, limited, [number], user_id)
    with pytest.raises(ApiError) as refused:
        await reserve_sms(client, limited, [numbers[LIMIT]], user_id)
    assert refused.value.status == 429 and refused.value.error == "rate_limited"
    assert "this user" in refused.value.message
    # The number's slot, taken before the user's was refused, is given back.
    assert await _used(dev_env, settings, quota_key("phone", numbers[LIMIT])) == 0
    assert await _used(dev_env, settings, quota_key("user", user_id)) == LIMIT


async def test_a_batch_reserves_one_slot_per_item_all_or_none(dev_env, settings, workers):
    client = client_for(dev_env.client, settings)
    limited = settings.model_copy(update={"sms_per_hour": LIMIT})
    busy, free = new_number(), new_number()
    assert await reserve_sms(client, limited, [busy] * 8)
    with pytest.raises(ApiError) as refused:
        await reserve_sms(client, limited, [free, busy, busy, busy])  # 11 for `busy`
    assert refused.value.status == 429
    assert await _used(dev_env, settings, quota_key("phone", free)) == 0  # released again
    assert await _used(dev_env, settings, quota_key("phone", busy)) == 8
    assert await reserve_sms(client, limited, [free, busy, busy])  # exactly 10
    # Throttling off: nothing is reserved at all.
    assert await reserve_sms(client, settings.model_copy(update={"sms_per_hour": 0}), [busy]) is None
