"""Field length limits are settings an operator can lower (HERALD_MAX_SUBJECT_CHARS, ..._EMAIL_BODY_CHARS,
..._SMS_CHARS, ..._WEBHOOK_DATA_BYTES): enforced on every route that takes the field, as a 400 naming it;
the OpenAPI schema keeps the ceilings (tests/docs)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.settings import MAX_SMS_CHARS, Settings
from tests.api.helpers import AUTH, api_client, assert_error

pytestmark = pytest.mark.usefixtures("workers")

LIMITS = {"max_subject_chars": 20, "max_email_body_chars": 50, "max_sms_chars": 160, "max_webhook_data_bytes": 30}
EMAIL = {"to": "ada@example.com", "subject": "s" * 20, "body": "b" * 50}
SMS = {"phone": "+14155550100", "message": "m" * 160}
WEBHOOK = {"url": "http://127.0.0.1:9/hook", "data": {"k": "v" * 20}}  # {"k":"vvv…"}: 28 bytes


@pytest.fixture
async def limited(make_app):
    async with api_client(make_app(**LIMITS), headers=AUTH) as client:
        yield client


def _fields(body: dict) -> list[str]:
    return [d["field"] for d in body["details"]]


@pytest.mark.parametrize(
    ("route", "body", "over", "field"),
    [
        ("/jobs/email", EMAIL, {"subject": "s" * 21}, "subject"),
        ("/jobs/email", EMAIL, {"body": "b" * 51}, "body"),
        ("/notify/email", EMAIL, {"body": "ü" * 51}, "body"),  # characters, not bytes
        ("/jobs/sms", SMS, {"message": "m" * 161}, "message"),
        ("/notify/sms", SMS, {"message": "m" * 161}, "message"),
        ("/notify/webhook", WEBHOOK, {"data": {"k": "v" * 30}}, "data"),
        ("/notify/webhook", WEBHOOK, {"data": ["ü" * 14]}, "data"),  # bytes of UTF-8 JSON: ["…"] is 32
    ],
)
async def test_a_value_over_a_lowered_limit_is_a_400_on_its_field(limited, route, body, over, field):
    refused = assert_error(await limited.post(route, json=body | over), 400, "validation_error")
    assert _fields(refused) == [field], refused
    assert "at most" in refused["details"][0]["message"]
    # At the limit: accepted.
    assert (await limited.post(route, json=body)).status_code == 202


async def test_every_field_over_its_limit_is_named(limited):
    refused = assert_error(
        await limited.post("/jobs/email", json=EMAIL | {"subject": "s" * 21, "body": "b" * 51}), 400, "validation_error"
    )
    assert _fields(refused) == ["subject", "body"]


async def test_schedules_and_chained_jobs_name_the_nested_field(limited):
    job = {"type": "sms", "phone": "+14155550100", "message": "m" * 161}
    refused = await limited.post("/schedules", json={"cron": "0 9 * * *", "job": job})
    assert _fields(assert_error(refused, 400, "validation_error")) == ["job.message"]
    chained = await limited.post("/jobs/email", json=EMAIL | {"then": job})
    assert _fields(assert_error(chained, 400, "validation_error")) == ["then.message"]


async def test_by_default_the_limits_are_the_schemas(api):
    assert (await api.post("/notify/sms", json=SMS | {"message": "m" * MAX_SMS_CHARS})).status_code == 202
    refused = assert_error(
        await api.post("/notify/sms", json=SMS | {"message": "m" * (MAX_SMS_CHARS + 1)}), 400, "validation_error"
    )
    assert _fields(refused) == ["message"]


def test_a_limit_can_be_lowered_not_raised():
    assert Settings(max_sms_chars=70).max_sms_chars == 70
    for name in ("max_subject_chars", "max_email_body_chars", "max_sms_chars"):
        with pytest.raises(ValidationError, match=name):
            Settings(**{name: Settings.model_fields[name].default + 1})
        with pytest.raises(ValidationError, match=name):
            Settings(**{name: 0})
