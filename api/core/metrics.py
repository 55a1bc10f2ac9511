"""The API's Prometheus metrics: jobs accepted, request latency, and `GET /metrics` (open, no key).

One registry per process (not prometheus-client's global one), so an app built twice in one
process (the tests do) registers nothing twice; every app of the process serves it.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.core.errors import errors
from common.metrics import DESCRIPTIONS, HTTP_REQUEST_DURATION, JOBS_ACCEPTED, LIVE_JOBS, LIVE_VIEWERS
from common.tenants import metric_label

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# prometheus-client adds `_total` to a counter's name itself: named without it, exposed with it.
jobs_accepted = Counter(
    JOBS_ACCEPTED.removesuffix("_total"), DESCRIPTIONS[JOBS_ACCEPTED], ["type", "tenant"], registry=REGISTRY
)
# The tenants a `tenant` label names (HERALD_API_KEYS's): any other is OTHER_TENANT, so the label stays
# bounded by the configuration (set by create_app; every app of a process has the same settings).
_tenants: frozenset[str] = frozenset()
# Up to a minute: long polls (`?wait=`) and event streams answer late on purpose.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
request_duration = Histogram(
    HTTP_REQUEST_DURATION,
    DESCRIPTIONS[HTTP_REQUEST_DURATION],
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
# Live status (api/jobs/live.py): what its watches cost the Temporal server grows with the first.
live_jobs = Gauge(LIVE_JOBS, DESCRIPTIONS[LIVE_JOBS], registry=REGISTRY)
live_viewers = Gauge(LIVE_VIEWERS, DESCRIPTIONS[LIVE_VIEWERS], registry=REGISTRY)
# The `route` of a request that matched no route (a 404 for an unknown path): never the raw path.
UNMATCHED = "unmatched"


def configure_tenant_labels(tenants: list[str]) -> None:
    global _tenants
    _tenants = frozenset(tenants)


def count_accepted(job_type: str, tenant: str | None, jobs: int = 1) -> None:
    """Jobs durably started in Temporal, about to be answered 202 (a batch's items count one each)."""
    jobs_accepted.labels(type=job_type, tenant=metric_label(tenant, _tenants)).inc(jobs)


class RequestLatencyMiddleware:
    """Times every HTTP request into `herald_http_request_duration_seconds{method,route,status}`,
    `route` being the matched route's template (`/jobs/{job_id}/status`), so no id becomes a label."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The router writes the matched route into the (shared) scope.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            request_duration.labels(method=scope["method"], route=route, status=str(status)).observe(
                time.perf_counter() - started
            )


router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    response_description="the Prometheus text format: `herald_jobs_accepted_total{type,tenant}`, "
    "`herald_http_request_duration_seconds{method,route,status}`, and the process's "
    "`process_*` / `python_*` metrics",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **errors()},
)
async def metrics(request: Request) -> Response:
    # The Prometheus text format, or OpenMetrics when the scraper asks for it (Accept).
    encode, content_type = choose_encoder(request.headers.get("accept"))
    return Response(encode(REGISTRY), headers={"Content-Type": content_type})
