"""The dev webhook inbox records what it gets and says whether the signature verifies."""

from __future__ import annotations

import json

import httpx

from activities.signing import sign_headers
from devstack.sms_sink import create_app
from tests.support.temporal import WEBHOOK_SECRET


async def test_the_inbox_records_webhooks_and_checks_their_signatures(tmp_path):
    app = create_app(tmp_path / "sms", "token", [WEBHOOK_SECRET])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sink") as sink:
        body = json.dumps({"event": "order.shipped"}).encode()
        signed = await sink.post(
            "/webhooks/orders", content=body, headers=sign_headers([WEBHOOK_SECRET], "msg_1", body)
        )
        forged = await sink.post(
            "/webhooks", content=body, headers=sign_headers(["whsec_" + "A" * 43 + "="], "msg_2", body)
        )
        assert signed.status_code == forged.status_code == 204
        records = (await sink.get("/webhooks")).json()
    assert [(r["path"], r["webhookId"], r["verified"]) for r in records] == [
        ("/webhooks/orders", "msg_1", True),
        ("/webhooks", "msg_2", False),
    ]
    assert records[0]["body"] == {"event": "order.shipped"}
