from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from activities.signing import sign_headers, verify


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


BODY = json.dumps({"type": "job.completed", "data": {"jobId": "email-1", "note": "héllo"}}, ensure_ascii=False).encode()


def test_signed_request_verifies():
    secret = new_secret()
    headers = sign_headers([secret], "msg_1", BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_matches_the_published_test_vector():
    # The example from the Standard Webhooks / Svix documentation.
    headers = sign_headers(
        ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        b'{"test": 2432232314}',
        datetime.fromtimestamp(1614265330, UTC),
    )
    assert headers == {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }


def test_two_secrets_each_verify_alone():
    old, new = new_secret(), new_secret()
    headers = sign_headers([old, new], "msg_rotate", BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_tampered_body_fails():
    secret = new_secret()
    headers = sign_headers([secret], "msg_1", BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"email-1", b"email-2"), headers)


def test_timestamp_older_than_tolerance_fails():
    secret = new_secret()
    headers = sign_headers([secret], "msg_1", BODY, datetime.now(UTC) - timedelta(minutes=6))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, headers)


def test_aware_non_utc_timestamp_is_the_same_instant():
    # The library reads any datetime's wall clock as UTC; sign_headers must convert first.
    secret = new_secret()
    local = datetime.now(timezone(timedelta(hours=2)))
    headers = sign_headers([secret], "msg_1", BODY, local)
    assert headers["webhook-timestamp"] == str(int(local.timestamp()))
    Webhook(secret).verify(BODY, headers)


def test_id_is_passed_through_unchanged_on_every_attempt():
    secret = new_secret()
    webhook_id = "msg_email-7f3a.attempt-independent_ID"
    now = datetime.now(UTC)
    first = sign_headers([secret], webhook_id, BODY, now - timedelta(seconds=30))
    retry = sign_headers([secret], webhook_id, BODY, now)
    assert first["webhook-id"] == retry["webhook-id"] == webhook_id
    assert first["webhook-signature"] != retry["webhook-signature"]
    Webhook(secret).verify(BODY, retry)


@pytest.mark.parametrize(
    "secrets, timestamp",
    [
        ([], None),
        (["whsec_"], None),
        ([new_secret()], datetime.now()),  # naive: which zone?
    ],
)
def test_bad_input_is_a_value_error(secrets, timestamp):
    with pytest.raises(ValueError):
        sign_headers(secrets, "msg_1", BODY, timestamp)


def test_verify_accepts_a_message_signed_by_any_active_secret_only():
    old, new, other = "whsec_" + "A" * 43 + "=", "whsec_" + "B" * 43 + "=", "whsec_" + "C" * 43 + "="
    body = b'{"event":"order.shipped"}'
    headers = sign_headers([old], "msg_rot", body)
    assert verify([new, old], body, headers) == {"event": "order.shipped"}
    with pytest.raises(WebhookVerificationError):
        verify([new, other], body, headers)
    with pytest.raises(WebhookVerificationError):
        verify([new, old], body + b" ", headers)
