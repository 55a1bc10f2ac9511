"""POST one signed webhook (Standard Webhooks) to a URL that passed the SSRF guard."""

from __future__ import annotations

import json

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.http_rules import excerpt, raise_for_answer, read_capped
from activities.signing import sign_headers
from activities.ssrf import GuardedTransport
from common.destinations import BlockedDestination
from common.models import DeliveryReceipt, WebhookRequest
from common.settings import Settings


class WebhookActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.secrets = settings.webhook_secrets()
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        # One client for every attempt: a new one costs a TLS context (~45 ms of CPU) each time.
        if self._client is None:
            s = self.settings
            self._client = httpx.AsyncClient(
                transport=GuardedTransport(s.webhook_allow_hosts, retries=0),
                timeout=httpx.Timeout(s.webhook_read_timeout_seconds, connect=s.webhook_connect_timeout_seconds),
                follow_redirects=False,
            )
        return self._client

    @activity.defn(name="deliver_webhook")
    async def deliver_webhook(self, request: WebhookRequest) -> DeliveryReceipt:
        return await self.deliver(request)

    async def deliver(self, request: WebhookRequest) -> DeliveryReceipt:
        """POST one webhook (the activity's work; a batch's slices call it per item)."""
        s = self.settings
        body = json.dumps(request.data, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Herald-Webhooks/1",
            **sign_headers(self.secrets, request.webhook_id, body),
        }
        try:
            async with self._http().stream("POST", request.url, content=body, headers=headers) as response:
                answer = await read_capped(response, s.webhook_max_response_bytes)
        except BlockedDestination as exc:
            raise ApplicationError(str(exc), type="BlockedDestination", non_retryable=True) from exc
        # Timeouts and connection errors propagate as they are and are retried.
        raise_for_answer("Webhook receiver", response.status_code, response.headers, answer, s.retry_after_cap_seconds)
        return DeliveryReceipt(
            summary=f"HTTP {response.status_code}", status_code=response.status_code, response_excerpt=excerpt(answer)
        )
