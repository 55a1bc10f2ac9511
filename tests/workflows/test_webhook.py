"""Webhook delivery (issue 3) in the time-skipping environment against real local HTTP receivers.

Every request a receiver gets here is checked with the standardwebhooks library's verifier.
"""

from __future__ import annotations

import contextlib
from datetime import UTC

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from temporalio.client import WorkflowFailureError

from api.jobs.starter import start_job, webhook_job
from tests.support.http_receiver import Answer, HttpReceiver, Received
from tests.support.temporal import WEBHOOK_SECRET, attempt_gaps, herald_client, job_spec, job_state, running_workers

DATA = {"event": "order.shipped", "order": {"id": 42, "items": ["book", "pen"]}, "note": "ünïcødé"}


def verified(request: Received, secret: str = WEBHOOK_SECRET) -> dict:
    return Webhook(secret).verify(request.body, request.headers)


async def deliver(env, settings, url: str, data=DATA, **spec_fields):
    spec = job_spec("webhook", family="notify", recipient=url, **spec_fields)
    async with running_workers(herald_client(env), settings):
        handle = (await start_job(herald_client(env), webhook_job(spec, url, data))).handle
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()
    return handle, await job_state(herald_client(env), handle)


async def test_500_500_200_is_three_signed_attempts_with_one_webhook_id(time_env, make_settings):
    with HttpReceiver([Answer(500), Answer(500), Answer(200, {"received": True})]) as receiver:
        handle, state = await deliver(time_env, make_settings(), receiver.url + "/hooks")

    assert len(receiver.received) == 3
    assert {r.headers["webhook-id"] for r in receiver.received} == {handle.id}
    for request in receiver.received:
        assert verified(request) == DATA
        assert request.path == "/hooks"
    assert state["phase"] == "completed" and state["attempts"] == 3
    log = state["deliveries"]
    assert [d["status_code"] for d in log] == [500, 500, 200]
    assert [d["succeeded"] for d in log] == [False, False, True]
    assert log[-1]["response_excerpt"] == '{"received": true}'


async def test_a_tampered_body_or_an_old_timestamp_does_not_verify(time_env, make_settings):
    with HttpReceiver() as receiver:
        await deliver(time_env, make_settings(), receiver.url)
    [request] = receiver.received
    tampered = request.body.replace(b"42", b"43")
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(tampered, request.headers)
    stale = dict(request.headers, **{"webhook-timestamp": str(int(request.headers["webhook-timestamp"]) - 3600)})
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(request.body, stale)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(request.body, request.headers)


async def test_during_secret_rotation_both_secrets_verify(time_env, make_settings):
    new_secret = "whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQgZm9yIHJvdGF0aW9u"
    with HttpReceiver() as receiver:
        await deliver(time_env, make_settings(webhook_secret=f"{new_secret} {WEBHOOK_SECRET}"), receiver.url)
    [request] = receiver.received
    assert len(request.headers["webhook-signature"].split()) == 2
    assert verified(request, new_secret) == verified(request, WEBHOOK_SECRET) == DATA


@pytest.mark.parametrize("status", [400, 404, 410, 422])
async def test_a_4xx_fails_at_once(time_env, make_settings, status):
    with HttpReceiver([Answer(status, {"error": "no"})]) as receiver:
        _, state = await deliver(time_env, make_settings(), receiver.url)
    assert len(receiver.received) == 1
    assert state["phase"] == "failed" and state["attempts"] == 1
    assert state["error"] == f"Webhook receiver answered HTTP {status}"


@pytest.mark.parametrize("status", [408, 429, 502, 503])
async def test_retryable_answers_are_retried(time_env, make_settings, status):
    with HttpReceiver([Answer(status), Answer(200)]) as receiver:
        _, state = await deliver(time_env, make_settings(), receiver.url)
    assert len(receiver.received) == 2 and state["phase"] == "completed"


@pytest.mark.parametrize("retry_after", ["3", "HTTP-DATE"])
async def test_retry_after_delays_the_next_attempt(time_env, make_settings, retry_after):
    low, high = 2.5, 6
    if retry_after == "HTTP-DATE":
        # An HTTP date is read against the worker's clock, which time-skipping does not move: a minute
        # ahead, less the real seconds (whole ones) until the worker reads it, up to 20 on a loaded machine.
        from datetime import datetime, timedelta
        from email.utils import format_datetime

        retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
        low, high = 40, 61
    with HttpReceiver([Answer(429, headers={"Retry-After": retry_after}), Answer(200)]) as receiver:
        # A backoff of 100 ms would retry almost at once: the gap must come from Retry-After.
        handle, state = await deliver(time_env, make_settings(), receiver.url, backoff_ms=100)
    [gap] = await attempt_gaps(handle, state)
    assert low <= gap < high, gap
    assert state["phase"] == "completed"


async def test_retry_after_is_capped_by_the_setting(time_env, make_settings):
    with HttpReceiver([Answer(503, headers={"Retry-After": "86400"}), Answer(200)]) as receiver:
        handle, state = await deliver(
            time_env, make_settings(retry_after_cap_seconds=60), receiver.url, retry_after_cap_s=60
        )
    [gap] = await attempt_gaps(handle, state)
    assert 60 <= gap < 62, gap


async def test_a_redirect_is_a_failure_and_is_not_followed(time_env, make_settings):
    with (
        HttpReceiver([Answer(200)]) as metadata_stand_in,
        HttpReceiver([Answer(302, headers={"Location": metadata_stand_in.url + "/latest/meta-data"})]) as receiver,
    ):
        _, state = await deliver(time_env, make_settings(), receiver.url)
    assert len(receiver.received) == 1 and metadata_stand_in.received == []
    assert state["phase"] == "failed" and state["attempts"] == 1 and "302" in state["error"]


async def test_a_private_destination_is_refused_at_send_time_without_connecting(time_env, make_settings):
    with HttpReceiver() as receiver:
        # Not allow-listed this time: the loopback receiver is a private destination.
        _, state = await deliver(time_env, make_settings(webhook_allow_hosts=[]), receiver.url)
    assert receiver.received == []
    assert state["phase"] == "failed" and state["attempts"] == 1
    assert "refused" in state["error"] and "loopback" in state["error"]


async def test_a_long_response_body_is_read_only_up_to_the_cap(time_env, make_settings):
    with HttpReceiver([Answer(200, b"x" * 1_000_000)]) as receiver:
        _, state = await deliver(time_env, make_settings(webhook_max_response_bytes=1000), receiver.url)
    assert state["phase"] == "completed"
    assert len(state["deliveries"][-1]["response_excerpt"]) <= 1000
