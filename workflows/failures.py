"""Turning a Temporal failure into the one-line reason a client reads."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ChildWorkflowError, FailureError


def failure_message(err: BaseException) -> str:
    # An ActivityError only says "activity failed"; the reason is its cause (the last attempt's error).
    cause = err.cause if isinstance(err, (ActivityError, ChildWorkflowError)) and err.cause else err
    return error_text(cause)


def error_text(exc: BaseException) -> str:
    """The reason alone: str() of a Temporal failure prefixes its type, which clients don't need."""
    if isinstance(exc, FailureError) and exc.message:
        return exc.message
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
