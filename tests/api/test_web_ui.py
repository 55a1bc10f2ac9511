"""What an operator reads in the Temporal Web UI without decoding payloads: redacted summaries."""

from __future__ import annotations

import pytest

from tests.api.helpers import until_final
from tests.support.temporal import herald_client

pytestmark = pytest.mark.usefixtures("workers")


async def summaries(dev_env, job_id: str) -> list[str]:
    """The summaries of a run's timers, activities and child workflows, as its history keeps them."""
    handle = herald_client(dev_env).get_workflow_handle(job_id)
    found = []
    async for event in handle.fetch_history_events():
        if event.HasField("user_metadata") and event.user_metadata.HasField("summary"):
            [text] = await herald_client(dev_env).data_converter.decode([event.user_metadata.summary])
            found.append(text)
    return found


async def test_a_run_reads_well_in_the_web_ui_and_shows_no_personal_data(api, dev_env, smtp_sink):
    body = {
        "to": "ada.lovelace@example.com",
        "subject": "Your secret code",
        "body": "code 424242",
        "webhookUrl": "http://127.0.0.1:9/callbacks/abc?token=t0ps3cret",
        "attempts": 4,
    }
    job_id = (await api.post("/jobs/email", json=body)).json()["jobId"]
    await until_final(api, job_id)
    description = await herald_client(dev_env).get_workflow_handle(job_id).describe()
    summary, details = await description.static_summary(), await description.static_details()
    assert summary == "email to a***@example.com"
    assert job_id in details and "at most 4" in details and "http://127.0.0.1:9/…" in details
    everything = " ".join([summary, details, *await summaries(dev_env, job_id)])
    for secret in ("ada.lovelace", "secret code", "424242", "callbacks/abc", "t0ps3cret"):
        assert secret not in everything
    assert "attempt 1 of 4" in await summaries(dev_env, job_id)


async def test_sms_and_webhook_summaries_are_masked(api, dev_env, sms_gateway):
    sms = (await api.post("/notify/sms", json={"phone": "+14155550123", "message": "hi"})).json()["notificationId"]
    description = await herald_client(dev_env).get_workflow_handle(sms).describe()
    assert await description.static_summary() == "SMS to +14*******23"
