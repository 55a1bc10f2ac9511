"""Which provider an SMS or email attempt goes through: the primary, or the configured fallback.

The rule (docs/delivery.md, "Provider fallback"): every attempt of a job goes to the primary,
except the job's last one when the job has two attempts or more and a fallback is configured.
A job only reaches its last attempt when every earlier attempt failed with a retryable error
(a permanent refusal ends it at once), so by then the primary has kept failing; the message
goes to the fallback by the same protocol and under the same idempotency key (Message-ID), so a
far side that got it twice can drop one. A job with one attempt has no retry to hand over and
stays on the primary. The decision is the activity's alone, from the attempt number its
`AttemptContext` gives it: the workflows (and the histories they replay) do not change.
"""

from __future__ import annotations

from typing import Literal

from temporalio.exceptions import ApplicationError

from common.failures import error_text

Provider = Literal["primary", "fallback"]
PRIMARY: Provider = "primary"
FALLBACK: Provider = "fallback"


def provider_for(fallback_configured: bool, attempt: int, max_attempts: int) -> Provider:
    """The provider of the job's attempt `attempt` (1-based) of `max_attempts`."""
    if fallback_configured and max_attempts > 1 and attempt >= max_attempts:
        return FALLBACK
    return PRIMARY


def unreachable(what: str, exc: BaseException) -> ApplicationError:
    """A network error or timeout on the fallback, named so the attempt log says which provider
    it was; an ordinary retryable failure like the same error on the primary."""
    return ApplicationError(f"{what}: {error_text(exc)}", type=type(exc).__name__)
