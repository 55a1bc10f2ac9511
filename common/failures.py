"""The one-line reason a client reads for an exception (shared by workflows and activities), and the
error a failed send attempt hands Temporal."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError, FailureError


def error_text(exc: BaseException) -> str:
    """The reason alone: str() of a Temporal failure prefixes its type, which clients don't need."""
    if isinstance(exc, FailureError) and exc.message:
        return exc.message
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ConciseError(ApplicationError):
    """An error whose message, type and details say all a reader needs: written to Temporal without
    its stack trace and cause chain (common/temporal.py). They stay in the worker's log, which the
    SDK writes from the exception itself.

    A failed send attempt's error is one (activities/attempt_log.py): while the activity retries,
    the server keeps it as the pending activity's last failure only up to
    `limit.mutableStateActivityFailureSize.error` (4 KiB by default) and keeps "Failure exceeds size
    limit." in place of a bigger one, which the API would then show as the job's error. A stack
    trace and aiosmtplib's or httpx's cause chain, encrypted, take about 3 KiB alone.
    """
