"""Provider fallback (HERALD_SMS_FALLBACK_URL, HERALD_SMTP_FALLBACK_HOST) in the time-skipping
environment, with real gateways and real SMTP servers at the edges.

A job's attempts go to the primary; the last one of a job with 2 or more goes to the fallback,
by the same protocol and under the same idempotency key (activities/fallback.py).
"""

from __future__ import annotations

import pytest
from aiosmtpd.controller import Controller
from temporalio.client import WorkflowFailureError

from api.jobs.service import job_status_body, load_job
from api.jobs.starter import start_job
from common.temporal import client_for
from devstack.smtp_sink import TEMPFAIL_REPLY, read_outbox
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import email_job, free_port, job_state, running_workers, sms_job

FALLBACK_TOKEN = "sms-fallback-token"


class _TempfailEverything:
    """A primary SMTP relay that is having a bad day: every recipient gets 451 (try again later)."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        self.refused.append(address)
        return TEMPFAIL_REPLY


@pytest.fixture
def tempfail_smtp():
    handler = _TempfailEverything()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, handler
    finally:
        controller.stop()


async def start(client, request):
    # The API's own start path, through Herald's client (its codec; time still skips).
    return (await start_job(client, request)).handle


def result_of(final) -> dict:
    """The receipt in a completed run's final state (a JobState, or its dict)."""
    return final["result"] if isinstance(final, dict) else final.result


async def status_of(client, handle) -> dict:
    """The job as GET /jobs/{id}/status answers it."""
    return job_status_body(await load_job(client, handle.id, None))


async def test_an_sms_whose_gateway_keeps_failing_goes_out_through_the_fallback_on_its_last_attempt(
    time_env, make_settings
):
    with (
        HttpReceiver([Answer(500, {"error": "gateway down"})]) as primary,
        HttpReceiver([Answer(200, {"id": "fb-77"})]) as fallback,
    ):
        settings = make_settings(
            sms_gateway_url=primary.url, sms_fallback_url=fallback.url, sms_fallback_token=FALLBACK_TOKEN
        )
        client = client_for(time_env.client, settings)
        async with running_workers(time_env.client, settings):
            handle = await start(client, sms_job(attempts=3))
            final = await handle.result()

    # Attempts 1 and 2 on the primary, attempt 3 on the fallback: one key on both sides.
    assert len(primary.received) == 2 and len(fallback.received) == 1
    [sent] = fallback.received
    assert sent.headers["idempotency-key"] == handle.id
    assert sent.headers["authorization"] == f"Bearer {FALLBACK_TOKEN}"
    assert sent.json() == {"to": "+14155550100", "body": "Your code is 123456", "idempotencyKey": handle.id}
    assert {r.headers["idempotency-key"] for r in primary.received} == {handle.id}
    assert result_of(final)["provider"] == "fallback" and result_of(final)["provider_id"] == "fb-77"

    status = await status_of(client, handle)
    assert status["status"] == "completed" and status["attempts"] == 3
    assert status["result"]["provider"] == "fallback" and status["result"]["providerId"] == "fb-77"
    assert [(d["attempt"], d["succeeded"], d["error"]) for d in status["deliveries"]] == [
        (1, False, "SMS gateway answered HTTP 500"),
        (2, False, "SMS gateway answered HTTP 500"),
        (3, True, None),
    ]


async def test_an_email_whose_relay_keeps_refusing_for_now_goes_out_through_the_fallback_relay(
    time_env, make_settings, smtp_sink, tempfail_smtp
):
    primary_port, primary = tempfail_smtp
    settings = make_settings(smtp_port=primary_port, smtp_fallback_host="127.0.0.1", smtp_fallback_port=smtp_sink.port)
    client = client_for(time_env.client, settings)
    async with running_workers(time_env.client, settings):
        handle = await start(client, email_job(attempts=4, backoff="fixed", backoff_ms=1000))
        final = await handle.result()

    assert primary.refused == ["ada@example.com"] * 3
    [mail] = read_outbox(smtp_sink.outbox)
    # The same Message-ID as every attempt on the primary: the job's idempotency key.
    assert mail["Message-ID"] == f"<{handle.id}@herald>" == result_of(final)["provider_id"]
    assert mail["Subject"] == "Hello" and mail.get_content().strip() == "Body text"
    status = await status_of(client, handle)
    assert status["status"] == "completed" and status["attempts"] == 4
    assert status["result"]["provider"] == "fallback"
    assert [d["statusCode"] for d in status["deliveries"]] == [451, 451, 451, None]
    assert all(d["error"].startswith("SMTP server answered 451") for d in status["deliveries"][:3])


async def test_a_primary_that_works_delivers_and_says_so(time_env, make_settings, smtp_sink):
    with HttpReceiver([Answer(200, {"id": "p-1"})]) as primary, HttpReceiver() as fallback:
        settings = make_settings(
            sms_gateway_url=primary.url,
            sms_fallback_url=fallback.url,
            smtp_fallback_host="127.0.0.1",
            smtp_fallback_port=free_port(),
        )
        client = client_for(time_env.client, settings)
        async with running_workers(time_env.client, settings):
            sms = await (await start(client, sms_job())).result()
            email = await (await start(client, email_job())).result()
    assert result_of(sms)["provider"] == "primary" and result_of(email)["provider"] == "primary"
    assert len(primary.received) == 1 and fallback.received == []
    assert len(read_outbox(smtp_sink.outbox)) == 1


async def test_an_unreachable_fallback_is_an_ordinary_failed_attempt(time_env, make_settings):
    # Nothing listens on the fallback's port: the last attempt fails like a network error would.
    with HttpReceiver([Answer(503, {"error": "down"})]) as primary:
        settings = make_settings(sms_gateway_url=primary.url, sms_fallback_url=f"http://127.0.0.1:{free_port()}/m")
        client = client_for(time_env.client, settings)
        async with running_workers(time_env.client, settings):
            handle = await start(client, sms_job(attempts=2))
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            # A job with one attempt has nothing to hand over: it stays on the primary.
            single = await start(client, sms_job(attempts=1))
            with pytest.raises(WorkflowFailureError):
                await single.result()
    state = await job_state(client, handle)
    assert state["phase"] == "failed" and state["attempts"] == 2
    last = state["deliveries"][-1]
    assert last["error"].startswith("SMS fallback gateway: ConnectError") and last["retryable"], last
    assert state["error"] == last["error"]
    assert len(primary.received) == 2  # attempt 1 of the first job, the only attempt of the second
    assert (await job_state(client, single))["deliveries"][0]["error"] == "SMS gateway answered HTTP 503"
