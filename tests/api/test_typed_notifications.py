"""POST /notifications: an email from the type's templates to a user, resolved when it is sent."""

from __future__ import annotations

import uuid

import pytest

from common.models import JOB_USER_KEY, user_ref
from tests.api.helpers import NAME, assert_error, mail_for, notify, poll, put_user

FINAL = {"success", "failed", "cancelled", "suppressed"}
# Markup and entities in what the client controls: the HTML part must escape all of it.
RESET_URL = "https://app.example.com/reset?token=abc&user=1"


async def until_final(api, job_id: str) -> dict:
    return await poll(api, f"/notifications/{job_id}", lambda b: b["status"] in FINAL)


def parts(mail) -> tuple[str, str]:
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    return text.get_content(), html.get_content()


@pytest.mark.parametrize(
    ("kind", "data", "subject", "says"),
    [
        ("welcome", None, f"Welcome, {NAME}!", "welcome aboard"),
        ("password-reset", {"resetUrl": RESET_URL}, "Reset your password", RESET_URL),
        ("order-confirmed", {"orderId": "A-1042"}, "Order A-1042 confirmed", "order A-1042"),
    ],
)
async def test_each_type_renders_both_parts_and_reaches_the_smtp_sink(
    api, dev_env, smtp_sink, kind, data, subject, says
):
    user_id = await put_user(api)
    job_id = await notify(api, type=kind, userId=user_id, **({"data": data} if data else {}))
    body = await until_final(api, job_id)
    assert body["status"] == "success" and body["type"] == "email" and body["attempts"] == 1, body
    [mail] = mail_for(smtp_sink.outbox, job_id)
    assert mail["To"] == f"{user_id}@example.com" and mail["Subject"] == subject
    text, html = parts(mail)
    # The plain text as written; the HTML escaped: no markup of the client's gets through.
    assert NAME in text and says in text
    assert "<script>" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in html
    assert html.lstrip().startswith("<!DOCTYPE html>")
    if kind == "password-reset":
        assert f'<a href="{RESET_URL.replace("&", "&amp;")}">' in html
    if kind == "order-confirmed":
        assert "<strong>A-1042</strong>" in html
    # Every status route answers for it in its own words.
    assert (await api.get(f"/jobs/{job_id}/status")).json()["status"] == "completed"
    assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "completed"
    # Listed under its user (the HeraldUser search attribute), never under the userId itself.
    description = await dev_env.client.get_workflow_handle(job_id).describe()
    assert description.typed_search_attributes.get(JOB_USER_KEY) == user_ref(user_id)


async def test_the_users_locale_picks_a_translation_where_one_exists(api, smtp_sink):
    german = await put_user(api, locale="de-AT", name="Jörg")
    french = await put_user(api, locale="fr", name="Zoé")  # no French templates: English
    de_job = await notify(api, type="order-confirmed", userId=german, data={"orderId": 7})
    fr_job = await notify(api, type="order-confirmed", userId=french, data={"orderId": 8})
    for job_id in (de_job, fr_job):
        assert (await until_final(api, job_id))["status"] == "success"
    [de_mail], [fr_mail] = mail_for(smtp_sink.outbox, de_job), mail_for(smtp_sink.outbox, fr_job)
    assert de_mail["Subject"] == "Bestellung 7 bestätigt"
    assert "Hallo Jörg" in parts(de_mail)[0] and 'lang="de"' in parts(de_mail)[1]
    assert fr_mail["Subject"] == "Order 8 confirmed" and "Hello Zoé" in parts(fr_mail)[0]


@pytest.mark.parametrize(
    ("user", "reason"), [(None, "unknown user"), ({"email": None, "phone": "+14155550100"}, "has no email address")]
)
async def test_an_unknown_user_or_one_without_an_address_fails_at_once_with_its_reason(api, smtp_sink, user, reason):
    user_id = f"u-{uuid.uuid4().hex[:12]}" if user is None else await put_user(api, **user)
    job_id = await notify(api, type="welcome", userId=user_id)
    body = await until_final(api, job_id)
    # Failed on the first attempt (not retried: retrying cannot fix it), the reason in `error`.
    assert body["status"] == "failed" and body["attempts"] == 1, body
    assert reason in body["error"] and user_id in body["error"], body
    assert body["deliveries"][0]["retryable"] is False
    assert (await api.get(f"/jobs/{job_id}")).json() == {
        "id": job_id,
        "status": "failed",
        "attempts": 1,
        "maxAttempts": 3,
        "error": body["error"],
        "decisions": [],
    }
    assert (await api.get(f"/jobs/{job_id}/status")).json()["status"] == "failed"
    assert mail_for(smtp_sink.outbox, job_id) == []


@pytest.mark.parametrize("opt_out", [{"optOut": ["email"]}, {"channels": {"email": False, "sms": True}}])
async def test_a_user_opted_out_of_email_is_suppressed_not_failed(api, smtp_sink, opt_out):
    user_id = await put_user(api, **opt_out)
    job_id = await notify(api, type="welcome", userId=user_id)
    body = await until_final(api, job_id)
    # Final, nothing sent, not a dead letter: in every vocabulary `suppressed`, with the reason and the rule.
    assert body["status"] == "suppressed" and body["suppressedReason"] == "channel_opt_out", body
    assert body["attempts"] == 0 and body["deliveries"] == [] and "error" not in body
    assert [(d["rule"], d["outcome"]) for d in body["decisions"]] == [("channel", "suppressed")]
    assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "suppressed"
    assert (await api.get(f"/jobs/{job_id}/status")).json()["suppressedReason"] == "channel_opt_out"
    cancel = await api.post(f"/jobs/{job_id}/cancel")
    assert cancel.status_code == 409 and cancel.json()["error"] == "not_cancellable"
    assert mail_for(smtp_sink.outbox, job_id) == []


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"type": "password-reset"}, ["data.resetUrl"]),
        ({"type": "password-reset", "data": {"resetUrl": "javascript:alert(1)"}}, ["data.resetUrl"]),
        ({"type": "order-confirmed", "data": {}}, ["data.orderId"]),
        ({"type": "order-confirmed", "data": {"orderId": "<b>"}}, ["data.orderId"]),
        ({"type": "welcome", "priority": 1}, ["priority"]),
        ({"type": "birthday"}, ["type"]),
        ({"type": "welcome", "userId": "no spaces"}, ["userId"]),
    ],
)
async def test_invalid_typed_notifications_are_a_400_naming_the_field(api, body, fields):
    refused = assert_error(await api.post("/notifications", json={"userId": "u-1"} | body), 400, "validation_error")
    assert [d["field"] for d in refused["details"]] == fields, refused
