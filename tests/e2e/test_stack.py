"""The whole stack, started the way `make run` starts it, delivering over every channel.

`python -m devstack` runs on free ports (Temporal dev server, SMTP and SMS sinks, worker,
API). Over real HTTP the test sends an email, an SMS job with a result callback
(`webhookUrl`) and a webhook, polls each to its final state, and then reads what came out
at the far edge: the email in the SMTP sink's outbox, the SMS from the gateway sink's
GET /messages, and the webhook and the callback at a local receiver, both verified with
the Standard Webhooks secret the launcher generated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from common.settings import DEV_API_KEY
from devstack.smtp_sink import read_outbox
from tests.support.http_receiver import HttpReceiver, Received
from tests.support.processes import DevStack, running_devstack, survivors

pytestmark = pytest.mark.e2e

FINAL_TIMEOUT = 30  # seconds for a job to reach its final state, and for its output to show


@pytest.fixture
def stack(tmp_path: Path, free_port) -> Iterator[DevStack]:
    with running_devstack(tmp_path, free_port) as stack:
        yield stack


def eventually(what: str, probe: Callable[[], Any], stack: DevStack, timeout: float = FINAL_TIMEOUT) -> Any:
    """Poll `probe` until it returns something truthy; fail with the launcher's log if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.launcher.poll() is not None:
            pytest.fail(f"launcher exited with {stack.launcher.returncode} while waiting for {what}:\n{stack.log()}")
        if result := probe():
            return result
        time.sleep(0.25)
    pytest.fail(f"{what} not seen within {timeout} s:\n{stack.log()}")


def final_state(api: httpx.Client, status_url: str, stack: DevStack, final: set[str]) -> dict:
    def probe() -> dict | None:
        answer = api.get(status_url)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body if body["status"] in final else None

    return eventually(f"final state of {status_url}", probe, stack)


def received_at(receiver: HttpReceiver, path: str) -> Callable[[], Received | None]:
    def probe() -> Received | None:
        return next((r for r in list(receiver.received) if r.path == path), None)

    return probe


def test_email_sms_and_webhook_through_the_dev_stack(stack: DevStack) -> None:
    secret = (stack.data_dir / "webhook_secret").read_text().strip()
    assert secret.startswith("whsec_")
    data = {
        "event": "order.shipped",
        "orderId": 4711,
        "items": [{"sku": "A-1", "qty": 2}],
        "note": "Grüße ✓",
        "gift": False,
        "coupon": None,
    }
    subject, text = "Your order shipped — café", "Hello Ada,\nyour parcel is on its way."
    sms_text = "Herald e2e: your code is 123456"

    with (
        HttpReceiver() as receiver,
        httpx.Client(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {DEV_API_KEY}"}, timeout=10, trust_env=False
        ) as api,
    ):
        email = api.post("/notify/email", json={"to": "ada@example.com", "subject": subject, "body": text})
        assert email.status_code == 202, email.text
        sms = api.post(
            "/jobs/sms", json={"phone": "+14155550100", "message": sms_text, "webhookUrl": f"{receiver.url}/callback"}
        )
        assert sms.status_code == 202, sms.text
        hook = api.post("/notify/webhook", json={"url": f"{receiver.url}/hook", "data": data})
        assert hook.status_code == 202, hook.text

        email_id, sms_id, hook_id = (email.json()["notificationId"], sms.json()["jobId"], hook.json()["notificationId"])
        assert email.json()["statusUrl"] == f"/notifications/{email_id}"
        assert sms.json()["statusUrl"] == f"/jobs/{sms_id}/status"

        notification_final = {"success", "failed", "cancelled"}
        email_state = final_state(api, email.json()["statusUrl"], stack, notification_final)
        sms_state = final_state(api, sms.json()["statusUrl"], stack, {"completed", "failed", "cancelled"})
        hook_state = final_state(api, hook.json()["statusUrl"], stack, notification_final)
        assert (email_state["status"], email_state["attempts"]) == ("success", 1), email_state
        assert (sms_state["status"], sms_state["attempts"]) == ("completed", 1), sms_state
        assert (hook_state["status"], hook_state["attempts"]) == ("success", 1), hook_state

        # The email, from the SMTP sink's outbox.
        outbox = stack.data_dir / "outbox"
        [message] = eventually("the email in the outbox", lambda: read_outbox(outbox), stack)
        assert message["To"] == "ada@example.com"
        assert message["Subject"] == subject
        assert message["Message-ID"] == f"<{email_id}@herald>"
        assert message.get_content().rstrip("\n") == text

        # The SMS, from the gateway sink.
        sms_sink = f"http://127.0.0.1:{stack.env['HERALD_DEV_SMS_PORT']}/messages"

        def sms_records() -> list[dict]:
            answer = httpx.get(sms_sink, timeout=5, trust_env=False)
            assert answer.status_code == 200, answer.text
            return answer.json()

        [record] = eventually("the SMS at the gateway sink", sms_records, stack)
        assert (record["to"], record["body"], record["idempotencyKey"]) == ("+14155550100", sms_text, sms_id)

        # The webhook: `data` exactly, signed with the launcher's secret.
        webhook = eventually("the webhook at the receiver", received_at(receiver, "/hook"), stack)
        assert webhook.method == "POST"
        assert webhook.headers["content-type"].startswith("application/json")
        assert json.loads(webhook.body) == data
        assert webhook.headers["webhook-id"] == hook_id  # derived from the job, the same on every retry
        assert Webhook(secret).verify(webhook.body, webhook.headers) == data

        # The SMS job's result callback: it follows the job's final state, so it may come a little later.
        callback = eventually("the result callback at the receiver", received_at(receiver, "/callback"), stack)
        event = Webhook(secret).verify(callback.body, callback.headers)
        assert event["type"] == "job.completed"
        assert event["timestamp"]
        assert event["data"]["jobId"] == sms_id
        assert event["data"]["status"] == "completed"  # /jobs/* speak BullMQ's words
        assert event["data"]["attempts"] == 1
        assert "error" not in event["data"]
        assert callback.headers["webhook-id"] != webhook.headers["webhook-id"]
        assert sorted(r.path for r in receiver.received) == ["/callback", "/hook"]  # each exactly once

    # Ctrl-C, as a terminal sends it: the launcher stops everything and exits 0.
    assert stack.interrupt() == 0, stack.log()
    assert survivors(stack.processes, timeout=5) == [], stack.log()
