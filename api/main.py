"""The FastAPI application."""

from __future__ import annotations

import logging

import email_validator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from temporalio.client import RPCTimeoutOrCancelledError, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.body_limit import BodyLimitMiddleware
from api.deps import unauthorized_caller
from api.errors import error_response, install_error_handlers, temporal_unavailable
from api.idempotency import IdempotencyMiddleware
from api.idempotency import document as document_idempotency
from api.metrics import RequestLatencyMiddleware
from api.metrics import router as metrics_router
from api.routers import admin_dlq, batches, health, jobs, notify
from api.routers import admin as admin_dashboard
from api.routers import admin_schedules, codec, reports, schedules
from api.routers import notifications, users
from api.routers.codec import CodecCors
from api.temporal import TemporalGateway, is_unreachable
from common.codec import EncryptionCodec
from common.logs import redact_secrets_of
from common.settings import Settings, get_settings

log = logging.getLogger("herald.api")


class MissingApiKeys(RuntimeError):
    pass


async def _on_rpc_error(request: Request, exc: RPCError) -> JSONResponse:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return error_response(404, "not_found", "no job with that id")
    if is_unreachable(exc):
        err = temporal_unavailable(exc.message)
        return error_response(err.status, err.error, err.message, headers=err.headers)
    log.error("Temporal refused a call: %s (%s)", exc.message, exc.status)
    return error_response(502, "temporal_error", f"Temporal refused the call: {exc.message}")


async def _on_rpc_timeout(request: Request, exc: RPCTimeoutOrCancelledError) -> JSONResponse:
    # An update or a query Temporal did not answer in time (no worker, or Temporal slow): as unreachable.
    err = temporal_unavailable(str(exc) or "Temporal did not answer in time")
    return error_response(err.status, err.error, err.message, headers=err.headers)


async def _on_query_failed(request: Request, exc: WorkflowQueryFailedError) -> JSONResponse:
    log.error("a workflow query failed: %s", exc)
    return error_response(502, "temporal_error", f"Temporal could not answer the query: {exc}")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    redact_secrets_of(settings)  # a last guard: common/logs.py masks them in every line
    if not settings.api_keys:
        raise MissingApiKeys(
            "HERALD_API_KEYS is empty, so no client could call the API. Set HERALD_API_KEYS=key1,key2 "
            "or run in dev mode (HERALD_DEV_MODE=true) to use the documented dev key.")
    app = FastAPI(
        title="Herald",
        version="0.1.0",
        description="Durable notifications and background jobs on Temporal. "
                    "Client routes take `Authorization: Bearer <client key>`.",
    )
    if settings.dev_mode:
        # Lets clients address the dev SMTP sink's reject.test / tempfail.test mailboxes
        # (email-validator's own switch for test environments; `.test` is reserved, RFC 6761).
        email_validator.TEST_ENVIRONMENT = True
    app.state.settings = settings
    # The payload codec the Web UI reaches through /codec (the API's Temporal client has its own).
    app.state.codec = EncryptionCodec(settings.encryption_keys())
    app.state.gateway = TemporalGateway(settings)
    install_error_handlers(app, refuse_first=unauthorized_caller)
    app.add_exception_handler(RPCError, _on_rpc_error)
    app.add_exception_handler(RPCTimeoutOrCancelledError, _on_rpc_timeout)
    app.add_exception_handler(WorkflowQueryFailedError, _on_query_failed)
    # Inside the body limit (it reads bodies whole), outside everything that answers.
    app.add_middleware(IdempotencyMiddleware, settings=settings)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       per_path={"/notify/batch": settings.max_batch_body_bytes})
    # Around the body limit: a 413 to the Web UI is readable by it too.
    app.add_middleware(CodecCors, settings=settings)
    # Outermost of Herald's middleware: it times the 413s too.
    app.add_middleware(RequestLatencyMiddleware)
    for module in (health, jobs, notify, batches, admin_dlq):
        app.include_router(module.router)
    app.include_router(admin_dashboard.router)
    app.include_router(schedules.router)
    app.include_router(reports.router)
    app.include_router(users.router)
    app.include_router(notifications.router)
    app.include_router(admin_schedules.router)
    app.include_router(metrics_router)
    app.include_router(codec.router)
    document_idempotency(app)
    return app
