"""Herald's Temporal Schedules for the API: creating a client's, and reading them all back (the
built-in ones are ensured by the worker: common/builtin_schedules.py).

A schedule's action starts one ordinary Herald job: the same workflow, input, task queue, memo and
search attributes as the API's own start (api/jobs/starter.py), with an empty job id. Temporal starts
each run as `<scheduleId>-<start time>`, and the workflow takes that id as its job id, idempotency
key and webhook-id (workflows/job_tracking.py), so every run is a job of its own on every status route.

The schedule's memo (SCHEDULE_MEMO_KEY) marks it as Herald's and keeps the job's body as the client
gave it, for GET /schedules/{id}; the cron is in the spec (common/schedules.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from temporalio.client import (
    Client,
    ScheduleActionResult,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    ScheduleSpec,
)
from temporalio.common import TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from api.core.errors import ApiError, validation_error
from api.jobs.models import TypedJobBody
from api.jobs.starter import typed_request
from common.builtin_schedules import job_schedule
from common.jobs import tenant_attributes, tenant_memo
from common.logs import log_event
from common.models import CleanupInput, NotificationInput
from common.schedules import BUILTIN_SCHEDULES, SCHEDULE_MEMO_KEY, cron_of, next_run_after
from common.settings import Settings
from common.temporal import RPC_TIMEOUT
from common.tenants import TENANT_MEMO_KEY, Tenant, owned_by

BUILTIN_ORDER = {b.id: n for n, b in enumerate(BUILTIN_SCHEDULES)}
BUILTINS = {b.id: b for b in BUILTIN_SCHEDULES}
# How long an admin action's answer waits for the scheduler to take the change in (for a trigger: to
# start the run, so the answer can name its job id).
TRIGGER_WAIT_S = 5.0


class _Described(Protocol):
    """What a schedule's description and a schedule's list entry both carry."""

    id: str
    schedule: Any
    info: Any


def schedule_not_found(schedule_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no schedule with id {schedule_id!r}")


# ---- building -------------------------------------------------------------------------------
def job_request(job: TypedJobBody, settings: Settings, tenant: Tenant) -> NotificationInput | CleanupInput:
    """The input each run starts with: what the API would build for the same job, with an empty job id.
    Its spec names the tenant, so every run records it (memo, HeraldTenant: common/jobs.py)."""
    return typed_request(job, "jobs", settings, "job.", tenant)


def job_body(job: TypedJobBody) -> dict[str, Any]:
    """The job as the client gave it (after normalising), `type` first."""
    given = job.model_dump(mode="json", exclude_unset=True)
    return {"type": job.type, **{k: v for k, v in given.items() if k != "type"}}


def _refused_spec(exc: RPCError) -> ApiError | None:
    """Temporal's own refusal of a cron or time zone that passed our checks, as the 400 it is."""
    if exc.status != RPCStatusCode.INVALID_ARGUMENT or "schedule spec" not in exc.message.lower():
        return None
    return validation_error("timezone" if "time zone" in exc.message.lower() else "cron", exc.message)


async def create_client_schedule(
    client: Client, settings: Settings, cron: str, timezone_name: str, job: TypedJobBody, tenant: Tenant
) -> ScheduleDescription:
    request = job_request(job, settings, tenant)
    schedule_id = f"schedule-{uuid.uuid4().hex[:20]}"
    # Every occurrence is a job of its own: one still retrying does not hold up the next.
    schedule = job_schedule(schedule_id, request, job.priority, cron, timezone_name, ScheduleOverlapPolicy.ALLOW_ALL)
    try:
        handle = await client.create_schedule(
            schedule_id,
            schedule,
            memo={SCHEDULE_MEMO_KEY: {"owner": "client", "cron": cron, "job": job_body(job)}}
            | tenant_memo(tenant.name),
            search_attributes=TypedSearchAttributes(tenant_attributes(tenant.name)),
            rpc_timeout=RPC_TIMEOUT,
        )
    except RPCError as exc:
        raise (_refused_spec(exc) or exc) from exc
    log_event("schedule.created", schedule_id=schedule_id, cron=cron, timezone=timezone_name, kind=job.type)
    return await handle.describe(rpc_timeout=RPC_TIMEOUT)


# ---- reading --------------------------------------------------------------------------------
async def describe_schedule(
    client: Client, schedule_id: str, tenant: Tenant | None
) -> tuple[ScheduleDescription, dict[str, Any]]:
    """A Herald schedule's description and memo entry; 404 for an unknown id, a schedule not Herald's, and
    another tenant's (`tenant` None: the admin's, who sees all). The built-in ones are every tenant's to
    read (a DELETE of one is a 409)."""
    try:
        description = await client.get_schedule_handle(schedule_id).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise schedule_not_found(schedule_id) from exc
        raise
    memo = await description.memo()
    entry = memo.get(SCHEDULE_MEMO_KEY)
    if not isinstance(entry, dict) or not (entry.get("owner") == "builtin" or owned_by(tenant, memo)):
        raise schedule_not_found(schedule_id)
    return description, entry


def schedule_tenant(memo: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The schedule's tenant as the admin's list shows it: none for a built-in one; its recorded one, or
    (made before tenants) the default tenant's: `tenant: None` here, named by list_schedules."""
    if entry.get("owner") == "builtin":
        return {}
    recorded = memo.get(TENANT_MEMO_KEY)
    return {"tenant": recorded if isinstance(recorded, str) else None}


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _last_run(recent: Sequence[ScheduleActionResult]) -> dict[str, str]:
    if not recent:
        return {}
    latest = max(recent, key=lambda r: r.started_at)
    body = {"lastRunAt": _instant(latest.started_at)}
    workflow_id = getattr(latest.action, "workflow_id", None)
    if workflow_id:
        body["lastJobId"] = workflow_id
    return body


def summary_body(described: _Described, entry: dict[str, Any]) -> dict[str, Any]:
    """{id, cron, timezone, paused, builtin, nextRunAt, lastRunAt?, lastJobId?}"""
    spec: ScheduleSpec = described.schedule.spec
    cron = cron_of(spec) or entry.get("cron") or ""
    zone = spec.time_zone_name or "UTC"
    paused = bool(described.schedule.state.paused)
    next_run = None
    if not paused:
        now = datetime.now(UTC)
        # Temporal's own times (a listed schedule's may be a little stale); croniter's otherwise.
        upcoming = [t for t in described.info.next_action_times if t > now]
        if upcoming:
            next_run = _instant(upcoming[0])
        elif cron:
            next_run = _instant(next_run_after(cron, zone, now))
    return {
        "id": described.id,
        "cron": cron,
        "timezone": zone,
        "paused": paused,
        "builtin": entry.get("owner") == "builtin",
        "nextRunAt": next_run,
        **_last_run(described.info.recent_actions),
    }


def detail_body(description: ScheduleDescription, entry: dict[str, Any]) -> dict[str, Any]:
    """The summary and the job: GET /schedules/{id}."""
    builtin = BUILTINS.get(description.id) if entry.get("owner") == "builtin" else None
    job = {"type": "cleanup", "task": builtin.task} if builtin else entry.get("job") or {}
    return summary_body(description, entry) | {"job": job}


async def list_schedules(client: Client, default_tenant: str, tenant: str | None = None) -> list[dict[str, Any]]:
    """Every Herald schedule (from Temporal's visibility store), the built-in ones first, each client's
    with its tenant (one made before tenants: the default tenant's); `tenant`: that tenant's only."""
    items = []
    async for listed in await client.list_schedules(rpc_timeout=RPC_TIMEOUT):
        memo = await listed.memo()
        entry = memo.get(SCHEDULE_MEMO_KEY)
        if not (isinstance(entry, dict) and listed.schedule is not None and listed.info is not None):
            continue
        owner = schedule_tenant(memo, entry)
        if owner:
            owner["tenant"] = owner["tenant"] or default_tenant
        if tenant is None or owner.get("tenant") == tenant:
            items.append(summary_body(listed, entry) | owner)
    return sorted(items, key=lambda item: (BUILTIN_ORDER.get(item["id"], len(BUILTIN_ORDER)), item["id"]))


# ---- changing -------------------------------------------------------------------------------
async def delete_schedule(client: Client, schedule_id: str, tenant: Tenant) -> None:
    _, entry = await describe_schedule(client, schedule_id, tenant)
    if entry.get("owner") == "builtin":
        raise ApiError(
            409,
            "builtin_schedule",
            f"{schedule_id!r} is a built-in schedule; an operator can pause it "
            f"with POST /admin/schedules/{schedule_id}/pause",
        )
    try:
        await client.get_schedule_handle(schedule_id).delete(rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # deleted meanwhile by another request
            raise schedule_not_found(schedule_id) from exc
        raise
    log_event("schedule.deleted", schedule_id=schedule_id)


async def _handle(client: Client, schedule_id: str) -> ScheduleHandle:
    await describe_schedule(client, schedule_id, None)  # 404 unless it is a Herald schedule
    return client.get_schedule_handle(schedule_id)


async def pause_schedule(client: Client, schedule_id: str, paused: bool) -> dict[str, Any]:
    handle = await _handle(client, schedule_id)
    if paused:
        await handle.pause(note="paused through the Herald admin API", rpc_timeout=RPC_TIMEOUT)
    else:
        await handle.unpause(note="unpaused through the Herald admin API", rpc_timeout=RPC_TIMEOUT)
    log_event("schedule.paused" if paused else "schedule.unpaused", schedule_id=schedule_id)
    # The scheduler takes the change in a moment later: answer with the state it has taken.
    end = time.monotonic() + TRIGGER_WAIT_S
    while True:
        description, entry = await describe_schedule(client, schedule_id, None)
        if description.schedule.state.paused == paused or time.monotonic() > end:
            return detail_body(description, entry)
        await asyncio.sleep(0.05)


async def trigger_schedule(client: Client, schedule_id: str) -> dict[str, Any]:
    """Run the schedule's job now (also while paused, and beside a run still going); the answer
    names the new run once Temporal has started it (waiting at most TRIGGER_WAIT_S)."""
    before, _ = await describe_schedule(client, schedule_id, None)
    handle = client.get_schedule_handle(schedule_id)
    await handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL, rpc_timeout=RPC_TIMEOUT)
    log_event("schedule.triggered", schedule_id=schedule_id)
    end = time.monotonic() + TRIGGER_WAIT_S
    while True:
        description, entry = await describe_schedule(client, schedule_id, None)
        if description.info.num_actions > before.info.num_actions or time.monotonic() > end:
            return detail_body(description, entry)
        await asyncio.sleep(0.05)
