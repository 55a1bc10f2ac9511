"""The operator's view: GET /admin/stats, GET /admin/jobs (and one job), and the dashboard page GET /admin (admin
token)."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.admin.models import RecentJob, RecentJobs, Stats, StatusCounts
from api.admin.service import STATUSES, job_stats, recent_jobs
from api.core.auth import ADMIN_CHALLENGE, Gateway, SettingsDep, TenantFilter, require_admin_token
from api.core.errors import errors
from api.core.visibility import tenant_clause
from api.jobs.models import JobStatus
from api.jobs.service import job_status_body, load_job
from common.models import JobKind

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin_token)])

SAY = {
    401: "`unauthorized`: no or wrong admin token",
    403: "`forbidden`: a client key; or an admin action by HTTP Basic from another site's page",
}


def _admin_errors(*statuses: int) -> dict:
    answers = errors(*statuses, say=SAY)
    if 401 in answers:  # the challenge a browser answers with its password prompt
        answers[401] = answers[401] | {
            "headers": {"WWW-Authenticate": {"description": f"`{ADMIN_CHALLENGE}`", "schema": {"type": "string"}}}
        }
    return answers


ADMIN_ERRORS = _admin_errors(401, 403, 502, 503)
TEMPLATES = Path(__file__).resolve().parent / "templates"
# How often the page reads the JSON routes again, in seconds.
REFRESH_SECONDS = 5


@router.get(
    "/stats",
    summary="Job counts by type and status, and the DLQ's size",
    response_description="Every job type with every `/jobs/{id}/status` word, read from Temporal's "
    "visibility store (which may lag a moment behind a change)",
    responses=_admin_errors(400, 401, 403, 502, 503),
    response_model_exclude_unset=True,
)
async def stats(gateway: Gateway, settings: SettingsDep, tenant: TenantFilter) -> Stats:
    found = await job_stats(await gateway.client(), tenant_clause(tenant, settings.tenant_names()[0]))
    body = Stats(
        counts={kind: StatusCounts(**words) for kind, words in found.counts.items()},
        dlq=found.dlq,
        deferred=found.deferred,
        digested=found.digested,
    )
    if found.approximate:
        body.approximate = True
    return body


@router.get(
    "/jobs",
    summary="The latest jobs, newest first",
    response_description="One item per job id (its latest run)",
    responses=_admin_errors(400, 401, 403, 502, 503),
    response_model_exclude_unset=True,
)
async def latest_jobs(
    gateway: Gateway,
    settings: SettingsDep,
    tenant: TenantFilter,
    type: Annotated[JobKind | None, Query(description="only jobs of this type")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="how many")] = 20,
) -> RecentJobs:
    jobs = await recent_jobs(await gateway.client(), settings.tenant_names()[0], limit=limit, kind=type, tenant=tenant)
    items = []
    for job in jobs:
        item = RecentJob(
            jobId=job.job_id,
            runId=job.run_id,
            type=job.type,
            status=job.status,
            createdAt=job.created_at,
            tenant=job.tenant or "",
        )
        if job.finished_at:
            item.finishedAt = job.finished_at
        items.append(item)
    return RecentJobs(items=items)


@router.get(
    "/jobs/{job_id}",
    summary="One job of any tenant, as GET /jobs/{id}/status answers",
    response_description="The job's state, attempt log and callback, and why it went out, waited or did not "
    "(`decisions`, `suppressedReason`): what the dashboard shows when a job is opened",
    responses=_admin_errors(401, 403, 404, 502, 503),
    response_model_exclude_unset=True,
)
async def one_job(job_id: str, gateway: Gateway) -> JobStatus:
    return JobStatus.model_validate(job_status_body(await load_job(await gateway.client(), job_id, None)))


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


@lru_cache(maxsize=1)
def _assets() -> tuple[str, str]:
    return (TEMPLATES / "dashboard.css").read_text(), (TEMPLATES / "dashboard.js").read_text()


def temporal_ui_url(settings: SettingsDep) -> str:
    return (settings.temporal_ui_url or f"http://127.0.0.1:{settings.temporal_ui_port}").rstrip("/")


def _has_route(request: Request, path: str) -> bool:
    # The app's schema (built once, then cached) names every route, however routers are nested.
    return path in request.app.openapi().get("paths", {})


def _json_errors(responses: dict) -> dict:
    """The error answers of an HTML route: still JSON (FastAPI would give them the route's type)."""
    json_error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        status: {k: v for k, v in answer.items() if k != "model"} | {"content": json_error}
        for status, answer in responses.items()
    }


@router.get(
    "",
    summary="The operator's dashboard (HTML)",
    response_class=HTMLResponse,
    response_description="A page that reads the admin JSON routes every few seconds with the "
    "credentials it was opened with (HTTP Basic: any user name, the admin token "
    "as password)",
    responses=_json_errors(ADMIN_ERRORS),
)
async def dashboard(request: Request, settings: SettingsDep) -> HTMLResponse:
    css, js = _assets()
    nonce = secrets.token_urlsafe(16)
    config = {
        "uiUrl": temporal_ui_url(settings),
        "namespace": settings.temporal_namespace,
        "refreshSeconds": REFRESH_SECONDS,
        "schedules": _has_route(request, "/admin/schedules"),
        # The tenant filter's choices: the tenants of HERALD_API_KEYS (the routes' `?tenant=` takes no other).
        "tenants": settings.tenant_names(),
    }
    page = (
        _environment()
        .get_template("dashboard.html")
        .render(
            css=css,
            js=js,
            nonce=nonce,
            config=config,
            ui_url=config["uiUrl"],
            namespace=settings.temporal_namespace,
            schedules=config["schedules"],
            tenants=config["tenants"],
            statuses=STATUSES,
            refresh_seconds=REFRESH_SECONDS,
        )
    )
    return HTMLResponse(
        page,
        headers={
            # Only this page's own inline style and script, and requests back to this API.
            "Content-Security-Policy": f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'",
            "X-Frame-Options": "DENY",  # no clickjacking of the redrive buttons
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
