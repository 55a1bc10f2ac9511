"""The contract's error body, {"error", "message", "details"}, for every failure the API answers, and
how each route documents its errors (`errors()`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

# Seconds a client should wait before retrying while Temporal is unreachable.
UNAVAILABLE_RETRY_AFTER = "5"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.details = details or []
        self.headers = headers


def validation_error(field: str, message: str) -> ApiError:
    return ApiError(400, "validation_error", f"{field}: {message}", [{"field": field, "message": message}])


def validation_errors(details: list[dict[str, str]]) -> ApiError:
    """A 400 with one `{"field", "message"}` detail per bad field, worded as a refused body's."""
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return ApiError(400, "validation_error", f"invalid request: {summary}", details)


def not_found(job_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no job with id {job_id!r}")


def temporal_unavailable(reason: str) -> ApiError:
    return ApiError(
        503,
        "temporal_unavailable",
        f"the job store (Temporal) is unreachable: {reason}",
        headers={"Retry-After": UNAVAILABLE_RETRY_AFTER},
    )


def error_response(
    status: int, error: str, message: str, details: list[Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "message": message, "details": details or []}, status_code=status, headers=headers
    )


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] == "body" else [str(p) for p in loc]
    # The body itself (not an object, empty): not "body", which is also an email field's name.
    return ".".join(parts) or "(body)"


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "field required"
    # Pydantic prefixes custom validator messages with "Value error, ".
    return error["msg"].removeprefix("Value error, ")


async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e["type"] == "json_invalid" for e in errors):
        return error_response(400, "invalid_json", "the body is not valid JSON")
    return await _on_api_error(
        request, validation_errors([{"field": _field(e["loc"]), "message": _message(e)} for e in errors])
    )


async def _on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.error, exc.message, exc.details, exc.headers)


HTTP_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))


def _unreadable_body(exc: StarletteHTTPException) -> JSONResponse | None:
    """FastAPI's 400 for a body json.loads raised on with something else than a JSONDecodeError."""
    cause = exc.__cause__
    if exc.status_code != 400 or not isinstance(cause, (ValueError, RecursionError)):
        return None
    if isinstance(cause, RecursionError):
        return error_response(400, "invalid_json", "the body is nested too deeply to be read")
    if isinstance(cause, UnicodeDecodeError):
        return error_response(400, "invalid_json", "the body is not valid JSON: it is not UTF-8")
    return error_response(400, "invalid_json", "the body is not valid JSON")


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")


def install_error_handlers(app: FastAPI, refuse_first: Callable[[Request], ApiError | None]) -> None:
    """`refuse_first` names a refusal (a 401) owed before any word about the body."""

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        refusal = refuse_first(request)
        return await (_on_api_error(request, refusal) if refusal else _on_validation(request, exc))

    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        unreadable = _unreadable_body(exc)
        if unreadable is None:
            return await _on_http_error(request, exc)
        refusal = refuse_first(request)
        return await _on_api_error(request, refusal) if refusal else unreadable

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


class FieldError(BaseModel):
    field: str = Field(
        description="dotted path from the body's root (`to`, `backoff.type`); `(body)` for the body itself"
    )
    message: str


class Error(BaseModel):
    """Every error the API answers."""

    error: str = Field(description="a stable code, e.g. `validation_error`, `not_found`")
    message: str = Field(description="for humans")
    details: list[FieldError] = Field(description="one item per bad field for `validation_error`; else empty")


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "`validation_error` (one detail per bad field) or `invalid_json`",
        "content": {
            "application/json": {
                "examples": {
                    "validation_error": {
                        "value": {
                            "error": "validation_error",
                            "message": "invalid request: attempts: Input should be less than or "
                            "equal to 25; backoff.type: Input should be 'exponential' or 'fixed'",
                            "details": [
                                {"field": "attempts", "message": "Input should be less than or equal to 25"},
                                {"field": "backoff.type", "message": "Input should be 'exponential' or 'fixed'"},
                            ],
                        }
                    },
                    "invalid_json": {
                        "value": {"error": "invalid_json", "message": "the body is not valid JSON", "details": []}
                    },
                }
            }
        },
    },
    401: {
        "description": "`unauthorized`: no or wrong client key (checked before the body)",
        "headers": {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    },
    403: {"description": "`forbidden`: a client key on an admin route (they take the admin token)"},
    404: {"description": "`not_found`: no job with that id"},
    409: {"description": "`not_cancellable`: the job is being sent or is already final"},
    413: {"description": "`payload_too_large`: the body is over HERALD_MAX_BODY_BYTES (checked first)"},
    429: {
        "description": "`rate_limited`: the recipient number (or user) had HERALD_SMS_PER_HOUR SMS in the last "
        "hour; nothing was started. `Retry-After`: seconds until a slot frees",
        "headers": _RETRY_AFTER,
    },
    502: {"description": "`temporal_error`: Temporal refused the call"},
    503: {
        "description": "`temporal_unavailable`: Temporal is unreachable; nothing was started",
        "headers": _RETRY_AFTER,
    },
    "default": {"description": "any other error (`method_not_allowed`, `internal_error`), in the same shape"},
}


def errors(*statuses: int, say: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: the error body under each of `statuses`, and under `default`;
    `say` gives a status a description of the route's own."""
    answers = {status: {"model": Error, **ERRORS[status]} for status in (*statuses, "default")}
    for status, description in (say or {}).items():
        if status in answers:
            answers[status] = answers[status] | {"description": description}
    return answers


# What a POST that creates something may answer; one that sends an SMS may also be throttled (429).
CREATE_ERRORS = errors(400, 401, 413, 502, 503)
SMS_CREATE_ERRORS = errors(400, 401, 413, 429, 502, 503)
