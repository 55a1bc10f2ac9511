"""The contract's error body, {"error", "message", "details"}, for every failure the API answers."""

from __future__ import annotations

from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

# Seconds a client should wait before retrying while Temporal is unreachable.
UNAVAILABLE_RETRY_AFTER = "5"


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, details: list[Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
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
    return ApiError(503, "temporal_unavailable", f"the job store (Temporal) is unreachable: {reason}",
                    headers={"Retry-After": UNAVAILABLE_RETRY_AFTER})


def error_response(status: int, error: str, message: str, details: list[Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, "details": details or []},
                        status_code=status, headers=headers)


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
    return await _on_api_error(request, validation_errors(
        [{"field": _field(e["loc"]), "message": _message(e)} for e in errors]))


async def _on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.error, exc.message, exc.details, exc.headers)


HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 429: "rate_limited"}


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
