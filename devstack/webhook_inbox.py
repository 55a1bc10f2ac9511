"""A dev webhook receiver: records every POST and whether its Standard Webhooks signature verifies.

Served by the dev sink next to the SMS gateway, so `make run` has somewhere to send webhooks:

    POST /webhooks/{anything}  → 204, recorded (a bad signature is recorded too, marked unverified)
    GET  /webhooks             → every recorded webhook, newest last
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from standardwebhooks.webhooks import WebhookVerificationError

from activities.signing import verify


def webhook_inbox(secrets: Sequence[str]) -> APIRouter:
    router = APIRouter()
    received: list[dict] = []

    def verifies(body: bytes, headers: dict[str, str]) -> bool:
        try:
            verify(secrets, body, headers)
        except WebhookVerificationError:
            return False
        return True

    @router.post("/webhooks", status_code=204)
    @router.post("/webhooks/{path:path}", status_code=204)
    async def receive(request: Request, path: str = "") -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            payload = json.loads(body)
        except ValueError:
            payload = body.decode("utf-8", "replace")
        received.append(
            {
                "path": "/webhooks/" + path if path else "/webhooks",
                "webhookId": headers.get("webhook-id"),
                "verified": verifies(body, headers),
                "body": payload,
                "receivedAt": datetime.now(UTC).isoformat(timespec="milliseconds"),
            }
        )
        return Response(status_code=204)

    @router.get("/webhooks")
    async def recorded() -> list[dict]:
        return received

    return router
