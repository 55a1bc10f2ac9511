"""The built-in schedules (common/schedules.py BUILTIN_SCHEDULES), which every worker ensures at start.

A schedule's action starts one ordinary Herald job: the same workflow, input, task queue, memo and
search attributes as the API's own start (common/jobs.py), with an empty job id. Temporal starts
each run as `<scheduleId>-<start time>`, and the workflow takes that id as its job id
(workflows/job_tracking.py). Ensuring is idempotent and safe from any number of workers at once:
a missing schedule is created, a changed one updated (an operator's pause kept), an equal one left.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from common.jobs import JobRequest, cleanup_job, new_spec, start_options
from common.logs import log_event
from common.schedules import (
    BUILTIN_SCHEDULES,
    CATCHUP_WINDOW,
    SCHEDULE_MEMO_KEY,
    BuiltinSchedule,
    cron_of,
    schedule_spec,
)
from common.settings import Settings
from common.temporal import RPC_TIMEOUT

log = logging.getLogger("herald.schedules")


def job_schedule(
    schedule_id: str,
    request: JobRequest,
    priority: int | None,
    cron: str,
    timezone_name: str,
    overlap: ScheduleOverlapPolicy,
) -> Schedule:
    start = start_options(request, priority)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            start.workflow,
            request,
            id=schedule_id,
            task_queue=start.task_queue,
            memo=start.memo,
            typed_search_attributes=start.search_attributes,
            priority=start.priority,
            static_summary=start.summary,
            static_details=start.details,
        ),
        spec=schedule_spec(cron, timezone_name),
        policy=SchedulePolicy(overlap=overlap, catchup_window=CATCHUP_WINDOW),
    )


def builtin_schedule(definition: BuiltinSchedule, settings: Settings) -> Schedule:
    # An empty job id: each run takes its own workflow id (a job's default options otherwise).
    request = cleanup_job(new_spec("", "cleanup", "jobs", settings), definition.task)
    # Two cleanups of the same directory at once gain nothing: a run still going skips the next.
    return job_schedule(
        definition.id, request, None, definition.cron, settings.schedule_timezone, ScheduleOverlapPolicy.SKIP
    )


async def _plain(client: Client, values: Sequence[Any]) -> list[Any]:
    """Values (or their payloads, as describe gives them) as plain JSON data."""
    values = list(values)
    if values and not all(hasattr(v, "metadata") for v in values):
        values = await client.data_converter.encode(values)
    return await client.data_converter.decode(values) if values else []


async def _what_runs(client: Client, schedule: Schedule) -> tuple[Any, ...]:
    """What an update must keep equal: when, what and how (not when the definition was written)."""
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    args = await _plain(client, action.args)
    memo = dict(zip(action.memo or {}, await _plain(client, list((action.memo or {}).values()))))
    for value in [*(a.get("job") for a in args if isinstance(a, dict)), *memo.values()]:
        if isinstance(value, dict):
            for moment in ("created_at", "updated_at"):
                value.pop(moment, None)
    attributes = sorted((pair.key.name, pair.value) for pair in action.typed_search_attributes)
    summaries = [await _plain(client, [text]) for text in (action.static_summary, action.static_details) if text]
    return (
        cron_of(schedule.spec),
        schedule.spec.time_zone_name,
        action.workflow,
        action.id,
        action.task_queue,
        args,
        memo,
        attributes,
        action.priority.priority_key,
        summaries,
        schedule.policy.overlap,
        schedule.policy.catchup_window,
    )


def _log_change(event: str, definition: BuiltinSchedule, settings: Settings) -> None:
    log_event(
        event,
        schedule_id=definition.id,
        cron=definition.cron,
        timezone=settings.schedule_timezone,
        task=definition.task,
    )


async def ensure_builtin_schedule(client: Client, settings: Settings, definition: BuiltinSchedule) -> str:
    """Create the schedule, or bring an existing one up to date; 'created', 'updated' or 'unchanged'.

    Safe to run from any number of workers at once: Temporal creates a schedule id once, and every
    other create answers "already exists", which is success here.
    """
    wanted = builtin_schedule(definition, settings)
    try:
        await client.create_schedule(
            definition.id, wanted, memo={SCHEDULE_MEMO_KEY: {"owner": "builtin"}}, rpc_timeout=RPC_TIMEOUT
        )
        _log_change("schedule.created", definition, settings)
        return "created"
    except ScheduleAlreadyRunningError:
        pass
    wanted_runs = await _what_runs(client, wanted)
    changed = False

    async def updater(current: ScheduleUpdateInput) -> ScheduleUpdate | None:
        nonlocal changed
        existing = current.description.schedule
        if await _what_runs(client, existing) == wanted_runs:
            changed = False
            return None
        changed = True
        # An operator's pause (and its note) outlives a new time zone.
        return ScheduleUpdate(schedule=dataclasses.replace(wanted, state=existing.state))

    await client.get_schedule_handle(definition.id).update(updater, rpc_timeout=RPC_TIMEOUT)
    if changed:
        _log_change("schedule.updated", definition, settings)
    return "updated" if changed else "unchanged"


async def ensure_builtin_schedules(client: Client, settings: Settings) -> dict[str, str]:
    """Every built-in schedule exists as defined; what happened to each, by id."""
    outcomes = await asyncio.gather(*(ensure_builtin_schedule(client, settings, d) for d in BUILTIN_SCHEDULES))
    return {d.id: outcome for d, outcome in zip(BUILTIN_SCHEDULES, outcomes)}


async def ensure_at_start(client: Client, settings: Settings) -> None:
    """The worker's start-up hook: ensure the built-in schedules; a failure is logged, never fatal
    (the worker still runs jobs, and the next start tries again)."""
    try:
        outcomes = await ensure_builtin_schedules(client, settings)
    except Exception:  # any failure: log it and go on polling
        log.exception("could not ensure the built-in schedules; the next worker start tries again")
        return
    log.info(
        "built-in schedules in %s: %s",
        settings.schedule_timezone,
        ", ".join(f"{sid} {outcome}" for sid, outcome in outcomes.items()),
    )
