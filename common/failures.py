"""The one-line reason a client reads for an exception (shared by workflows and activities)."""

from __future__ import annotations

from temporalio.exceptions import FailureError


def error_text(exc: BaseException) -> str:
    """The reason alone: str() of a Temporal failure prefixes its type, which clients don't need."""
    if isinstance(exc, FailureError) and exc.message:
        return exc.message
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
