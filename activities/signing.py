"""Standard Webhooks signing (https://www.standardwebhooks.com/) for outgoing webhooks, and its check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError


def sign_headers(
    secrets: Sequence[str], webhook_id: str, body: bytes, timestamp: datetime | None = None
) -> dict[str, str]:
    """The webhook-id / webhook-timestamp / webhook-signature headers for `body`.

    Every active secret signs, space-separated, so receivers keep verifying while a
    secret is rotated. Pass the same `webhook_id` on every retry so receivers can
    de-duplicate; `timestamp` (timezone-aware, default now) is the attempt's time.
    """
    if not secrets:
        raise ValueError("at least one webhook signing secret is required")
    if timestamp is None:
        timestamp = datetime.now(UTC)
    elif timestamp.tzinfo is None:
        # The library reads a naive time as UTC; a local one would be skewed by hours
        # and receivers would reject it as too old or too new.
        raise ValueError("timestamp must be timezone-aware")
    timestamp = timestamp.astimezone(UTC).replace(microsecond=0)
    # The library signs text; JSON bodies are UTF-8, and decoding strictly round-trips exactly.
    text = body.decode("utf-8")
    signatures = []
    for secret in secrets:
        try:
            webhook = Webhook(secret)
        except (ValueError, EmptyWebhookSecretError) as exc:
            raise ValueError("invalid webhook signing secret (expected whsec_<base64>)") from exc
        signatures.append(webhook.sign(webhook_id, timestamp, text))
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


def verify(secrets: Sequence[str], body: bytes, headers: Mapping[str, str]) -> Any:
    """What a receiver does: the payload, if any of the active `secrets` signed it (and it is recent).

    Raises WebhookVerificationError otherwise. Used by Herald's own dev receivers (the webhook inbox,
    `make demo`); a real receiver holds its secrets and calls the library the same way.
    """
    for secret in secrets:
        try:
            return Webhook(secret).verify(body, dict(headers))
        except WebhookVerificationError:
            continue
    raise WebhookVerificationError("no active secret signed this message")
