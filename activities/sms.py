"""Send one SMS through the HTTP gateway (docs/delivery.md, "SMS gateway protocol")."""

from __future__ import annotations

import httpx
from temporalio import activity

from activities.fallback import FALLBACK, Provider, provider_for, unreachable
from activities.http_rules import excerpt, raise_for_answer
from common.logs import log_event
from common.models import DeliveryReceipt, SmsMessage
from common.settings import Settings


class SmsActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        # One client (and connection pool) for every attempt, instead of a TLS context per send.
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.send_timeout_seconds, connect=5), follow_redirects=False
            )
        return self._client

    def _gateway(self, attempt: int, max_attempts: int) -> tuple[Provider, str, str]:
        s = self.settings
        # The fallback gateway takes the last attempt: by then the primary has kept failing
        # (activities/fallback.py).
        if provider_for(bool(s.sms_fallback_url), attempt, max_attempts) == FALLBACK:
            return FALLBACK, s.sms_fallback_url or "", s.sms_fallback_token or ""
        return "primary", s.sms_gateway_url, s.sms_gateway_token

    @activity.defn(name="send_sms")
    async def send_sms(self, sms: SmsMessage) -> DeliveryReceipt:
        return await self.deliver(sms, sms.context.job_attempt(activity.info().attempt), sms.context.max_attempts)

    async def deliver(self, sms: SmsMessage, attempt: int, max_attempts: int) -> DeliveryReceipt:
        """Send one SMS as the job's attempt `attempt` (the activity's work; a batch's slices call it per item)."""
        provider, url, token = self._gateway(attempt, max_attempts)
        what = "SMS fallback gateway" if provider == FALLBACK else "SMS gateway"
        if provider == FALLBACK:
            log_event("attempt.fallback", job_id=sms.idempotency_key, channel="sms", attempt=attempt)
        # Network errors and timeouts are retried (on the primary they propagate as they are).
        try:
            response = await self._http().post(
                url,
                json={"to": sms.phone, "body": sms.message, "idempotencyKey": sms.idempotency_key},
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": sms.idempotency_key},
            )
        except httpx.TransportError as exc:
            if provider == FALLBACK:
                raise unreachable(what, exc) from exc
            raise
        raise_for_answer(
            what, response.status_code, response.headers, response.content, self.settings.retry_after_cap_seconds
        )
        try:
            answer_id = response.json().get("id")
        except (ValueError, AttributeError):
            answer_id = None
        provider_id = str(answer_id) if answer_id is not None else None
        return DeliveryReceipt(
            summary=f"HTTP {response.status_code}",
            provider_id=provider_id,
            status_code=response.status_code,
            response_excerpt=excerpt(response.content),
            provider=provider,
        )
