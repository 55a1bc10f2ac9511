"""The FastAPI application: every capability's routes (one package each), inside the plumbing of api/core/.

The one module that knows every capability: api/core/ knows none, and a capability knows only
api/core/ and the capabilities it builds on (api/jobs/ most of all), so no import runs in a circle
(tests/api/test_layout.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import email_validator
from fastapi import FastAPI

from api.admin import routes as admin
from api.admin import schedules as admin_schedules
from api.batches import routes as batches
from api.codec import routes as codec
from api.codec.cors import CodecCors
from api.core import health
from api.core.auth import unauthorized_caller
from api.core.body_limit import BodyLimitMiddleware
from api.core.errors import install_error_handlers
from api.core.idempotency import IdempotencyMiddleware
from api.core.idempotency import document as document_idempotency
from api.core.intake import IntakeWorker
from api.core.metrics import RequestLatencyMiddleware, configure_tenant_labels
from api.core.metrics import router as metrics_router
from api.core.temporal import TemporalGateway, install_temporal_error_handlers
from api.dead_letters import routes as dead_letters
from api.jobs import routes as jobs
from api.notifications import routes as notifications
from api.reports import routes as reports
from api.schedules import routes as schedules
from api.users import routes as users
from common.codec import EncryptionCodec
from common.logs import redact_secrets_of
from common.settings import Settings, get_settings

log = logging.getLogger("herald.api")


class MissingApiKeys(RuntimeError):
    pass


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """While the app is served: its intake worker (api/core/intake.py), so a POST never waits on a job
    worker. An app served without lifespan events (a test's ASGI transport) has none: its intake-time
    updates wait for some other process to poll INTAKE_TASK_QUEUE."""
    intake = IntakeWorker(app.state.gateway)
    app.state.intake = intake
    intake.start()
    try:
        yield
    finally:
        await intake.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    redact_secrets_of(settings)  # a last guard: common/logs.py masks them in every line
    if not settings.api_keys:
        raise MissingApiKeys(
            "HERALD_API_KEYS is empty, so no client could call the API. Set HERALD_API_KEYS=key1,key2 "
            "or run in dev mode (HERALD_DEV_MODE=true) to use the documented dev key."
        )
    app = FastAPI(
        title="Herald",
        version="0.1.0",
        description="Durable notifications and background jobs on Temporal. "
        "Client routes take `Authorization: Bearer <client key>`.",
        lifespan=lifespan,
    )
    if settings.dev_mode:
        # Lets clients address the dev SMTP sink's reject.test / tempfail.test mailboxes
        # (email-validator's own switch for test environments; `.test` is reserved, RFC 6761).
        email_validator.TEST_ENVIRONMENT = True
    app.state.settings = settings
    configure_tenant_labels(settings.tenant_names())
    # The payload codec the Web UI reaches through /codec (the API's Temporal client has its own).
    app.state.codec = EncryptionCodec(settings.encryption_keys())
    app.state.gateway = TemporalGateway(settings)
    install_error_handlers(app, refuse_first=unauthorized_caller)
    install_temporal_error_handlers(app)
    # Inside the body limit (it reads bodies whole), outside everything that answers.
    app.add_middleware(IdempotencyMiddleware, settings=settings)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        per_path={"/notify/batch": settings.max_batch_body_bytes},
    )
    # Around the body limit: a 413 to the Web UI is readable by it too.
    app.add_middleware(CodecCors, settings=settings)
    # Outermost of Herald's middleware: it times the 413s too.
    app.add_middleware(RequestLatencyMiddleware)
    # In this order, the order of docs/openapi.json's paths.
    for router in (
        health.router,
        jobs.router,
        notifications.router,
        batches.router,
        dead_letters.router,
        admin.router,
        schedules.router,
        reports.router,
        users.router,
        notifications.typed_router,
        admin_schedules.router,
        metrics_router,
        codec.router,
    ):
        app.include_router(router)
    document_idempotency(app)
    return app
