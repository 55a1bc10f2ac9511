"""SMS throttling: at most HERALD_SMS_PER_HOUR SMS per recipient number (and per user) in any
rolling hour, counted in Temporal, so every API replica sees the same count.

Each number and each user has a quota workflow (workflows/sms_quota.py, id `sms-quota-<digest>`:
never the number itself). A request reserves its slots before its job is started, by an
update-with-start (the first SMS to a number starts its workflow), so a refused request (429)
creates no job. Several keys (a batch's numbers, a number and its user) are reserved one by one
(concurrently); when one is refused the others' reservations are released again. Between the two
a concurrent request to the same number may see it fuller than it ends up: it is refused too
early, never let through over the limit.

The quota workflows run on INTAKE_TASK_QUEUE, served by the API processes themselves
(api/core/intake.py): an SMS is accepted (or refused) with no job worker running.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence

from temporalio.client import Client, RPCTimeoutOrCancelledError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.core.errors import ApiError, temporal_unavailable
from api.core.temporal import BUSY_RETRIES, is_unreachable, one_update_at_a_time, pause_when_busy, too_many_updates
from common.logs import log_event
from common.models import QuotaAnswer, QuotaRequest
from common.settings import Settings
from common.sms_quota import WINDOW, quota_key, release_on, reserve_on
from common.summaries import mask_phone

# Reservations in flight at once for one request (a batch of many numbers).
PARALLEL = 32


class Throttled(ApiError):
    def __init__(self, message: str, retry_after_s: float, retry_at: str | None = None) -> None:
        seconds = max(1, math.ceil(retry_after_s))
        when = f" (at {retry_at})" if retry_at else ""
        super().__init__(
            429, "rate_limited", f"{message}; a slot frees in {seconds} s{when}", headers={"Retry-After": str(seconds)}
        )
        self.retry_after_s = seconds


async def _reserve(client: Client, key: str, request: QuotaRequest) -> QuotaAnswer:
    async with one_update_at_a_time(key):
        for attempt in range(BUSY_RETRIES):
            try:
                return await reserve_on(client, key, request)
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    # The run ended (idle for an hour) between the server finding it and the update
                    # reaching it: once more, which starts a new run.
                    continue
                if not too_many_updates(exc) or attempt == BUSY_RETRIES - 1:
                    raise
            await pause_when_busy(attempt)
        return await reserve_on(client, key, request)


async def _release(client: Client, key: str, token: str) -> None:
    try:
        await release_on(client, key, token)
    except (RPCError, WorkflowUpdateFailedError, RPCTimeoutOrCancelledError) as exc:
        # Not released: the slots count until they expire (a refusal too many, never one too few).
        log_event("sms_quota.release_failed", key=key, error=str(exc))


async def reserve_sms(
    client: Client, settings: Settings, numbers: Sequence[str], user_id: str | None = None, scope: str = ""
) -> str | None:
    """Reserve one SMS slot per item of `numbers` (E.164; repeats count each), on each number's quota and,
    with `user_id`, len(numbers) on the user's, all or none; the quotas of the tenant `scope`
    (common/tenants.py: the count is per tenant).

    Raises ApiError 429 `rate_limited` (with `Retry-After`: seconds until enough slots free) when any
    quota is full, and 503 `temporal_unavailable` when Temporal cannot be reached. Returns the
    reservation's token (for release_sms), or None when throttling is off (HERALD_SMS_PER_HOUR=0).
    """
    limit = settings.sms_per_hour
    if not limit or not numbers:
        return None
    token = uuid.uuid4().hex
    wanted: dict[str, tuple[int, str]] = {
        quota_key("phone", n, scope): (count, f"number {mask_phone(n)}") for n, count in Counter(numbers).items()
    }
    if user_id is not None:
        wanted[quota_key("user", user_id, scope)] = (len(numbers), "this user")
    gate = asyncio.Semaphore(PARALLEL)

    async def one(key: str, count: int) -> QuotaAnswer:
        async with gate:
            return await _reserve(
                client,
                key,
                QuotaRequest(count=count, limit=limit, token=f"{token}-{key}", window_s=WINDOW.total_seconds()),
            )

    keys = list(wanted)
    outcomes = await asyncio.gather(*(one(k, wanted[k][0]) for k in keys), return_exceptions=True)
    granted = [k for k, o in zip(keys, outcomes) if isinstance(o, QuotaAnswer) and o.granted]
    refused = [(k, o) for k, o in zip(keys, outcomes) if isinstance(o, QuotaAnswer) and not o.granted]
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if refused or failures:
        await asyncio.gather(*(_release(client, k, f"{token}-{k}") for k in granted))
    for failure in failures:
        if isinstance(failure, RPCError) and is_unreachable(failure):
            raise temporal_unavailable(failure.message) from failure
        if isinstance(failure, RPCTimeoutOrCancelledError):
            raise temporal_unavailable(str(failure) or "Temporal did not answer in time") from failure
    if failures:
        raise failures[0]
    if refused:
        key, answer = max(refused, key=lambda r: r[1].retry_after_s or 0)
        count, who = wanted[key]
        log_event("sms.rate_limited", quota=key, used=answer.used, limit=limit, retry_after_s=answer.retry_after_s)
        what = f"{count} more SMS" if count > 1 else "another SMS"
        raise Throttled(
            f"{who} had {answer.used} SMS in the last hour; at most {limit} per hour, so {what} must wait",
            answer.retry_after_s or WINDOW.total_seconds(),
            answer.retry_at,
        )
    return token


async def release_sms(
    client: Client, numbers: Sequence[str], token: str | None, user_id: str | None = None, scope: str = ""
) -> None:
    """Take back a reservation whose job could not be started (best effort)."""
    if token is None:
        return
    keys = {quota_key("phone", n, scope) for n in numbers}
    if user_id is not None:
        keys.add(quota_key("user", user_id, scope))
    await asyncio.gather(*(_release(client, k, f"{token}-{k}") for k in keys))


@contextlib.asynccontextmanager
async def sms_slots(
    client: Client, settings: Settings, numbers: Sequence[str], user_id: str | None = None, *, scope: str
) -> AsyncIterator[None]:
    """Reserve the slots (or raise the 429) for what the block starts; released if the block fails, unless
    the start may have reached Temporal anyway (no answer): then its job may exist, and a retry with the
    same Idempotency-Key finds it without taking another slot, so this one stays counted."""
    token = await reserve_sms(client, settings, numbers, user_id, scope)
    try:
        yield
    except RPCTimeoutOrCancelledError:
        raise
    except RPCError as exc:
        if not is_unreachable(exc):
            await release_sms(client, numbers, token, user_id, scope)
        raise
    except BaseException:
        await release_sms(client, numbers, token, user_id, scope)
        raise
