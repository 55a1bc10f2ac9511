"""How Herald reads an HTTP answer from an SMS gateway or a webhook receiver.

2xx delivered; 408, 429 and 5xx retried (a 429/503 `Retry-After` sets the next delay);
3xx and other 4xx fail at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
from temporalio.exceptions import ApplicationError

from common.models import FailureDetail

RETRYABLE_STATUS = {408, 429}
EXCERPT_CHARS = 512


def retry_after(value: str | None, cap_seconds: float, now: datetime | None = None) -> timedelta | None:
    """Parse `Retry-After` (delta-seconds or HTTP date), capped; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return timedelta(seconds=min(max(seconds, 0.0), cap_seconds))


def excerpt(body: bytes) -> str:
    return body[: EXCERPT_CHARS * 4].decode("utf-8", "replace")[:EXCERPT_CHARS]


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """Read at most `limit` bytes of a streamed body: a receiver cannot make us buffer gigabytes."""
    chunks, size = [], 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def raise_for_answer(what: str, status: int, headers: httpx.Headers, body: bytes, retry_after_cap: float) -> None:
    """Raise the ApplicationError Temporal's retry policy should see for a non-2xx answer."""
    if 200 <= status < 300:
        return
    detail = FailureDetail(status_code=status, response_excerpt=excerpt(body))
    if status in RETRYABLE_STATUS or status >= 500:
        delay = retry_after(headers.get("retry-after"), retry_after_cap) if status in (429, 503) else None
        raise ApplicationError(f"{what} answered HTTP {status}", detail, type="HttpRetryable", next_retry_delay=delay)
    if 300 <= status < 400:
        location = headers.get("location", "")
        raise ApplicationError(
            f"{what} answered HTTP {status} redirect to {location!r}; redirects are not followed",
            detail,
            type="HttpRedirect",
            non_retryable=True,
        )
    raise ApplicationError(f"{what} answered HTTP {status}", detail, type="HttpRejected", non_retryable=True)
