"""What the operator sees: job counts by type and status, the jobs waiting on their users' preferences,
the DLQ's size, and the latest jobs.

Everything is read from Temporal visibility, never kept by the API, in few calls: visibility
has a rate limit of its own per namespace (the server's `frontend.namespaceRPS.visibility`, 10
a second by default, shared with the Web UI and the DLQ routes), so one stats answer makes about
nine, whatever the numbers:

- per job type, one COUNT grouped by the run's ExecutionStatus (the only field the dev server and
  SQL visibility can GROUP BY): a closed run is `completed` (Completed), `failed` (Failed,
  Terminated, TimedOut: as the DLQ has it, api/dead_letters/service.py) or `cancelled` (Canceled);
- a running job is read as GET /jobs/{id}/status reads it (api/jobs/service.py): `processing`
  when a worker has its workflow task (the first attempt runs inside it, a local activity) or its
  send activity is started or pending, `delayed` while it waits out a delay or a retry backoff.
  Visibility cannot say that: its `HeraldStatus` search attribute is written at start (`queued`
  or `delayed`) and at the job's end only (common/models.py, workflows/job_tracking.py), and a
  write per attempt would cost every job a history event. So the running jobs are listed (those
  whose HeraldStatus is not `queued`, and the `queued` ones), and each that may be sending is
  described: every one whose memo (the job's state, which its workflow upserts at each change and
  visibility keeps) does not say it waits until a later time (a timer, no send in flight).
  Describes are not visibility requests (the namespace's ordinary rate limit, far higher), at most
  DESCRIBES_AT_ONCE at a time;
- the same memos say which running jobs wait on their user's preferences (`waiting_on`): `deferred`
  (quiet hours) and `digested` (in an open digest), both among `delayed`. A search attribute set at
  that moment would need a patched change to every job's workflow and save no request: the running
  jobs are listed anyway;
- past MAX_DESCRIBED_RUNNING such jobs, none is described: each of them counts under its
  HeraldStatus (`queued` or `delayed`, `processing` 0) and the answer says it is `approximate`.
  A finished job whose result callback is still being delivered counts as it ended;
- a job id counts once, under its latest run. Only a dead letter's job id has older runs: a
  redrive starts the same id again, a discard starts a tombstone run (no HeraldJobType, so never
  counted). One pass over the dead runs (those GET /admin/dlq pages through) finds them: the
  dead runs whose job id has a newer Herald run are taken out of their bucket, and the dead runs
  that are their job's latest run are the DLQ.

Past MAX_DESCRIBED_RUNNING running jobs that may be sending (above), MAX_LISTED_RUNNING running
jobs that are not queued (or that are), or MAX_LISTED_DEAD dead runs kept (within the namespace's
retention), the answer is estimated and says so (`approximate`): the running ones not listed count as
`delayed` (and not in `deferred` or `digested`), and the DLQ is the dead runs less the discarded ones
(redriven jobs' old runs are then still in it, and still count as failed). An exact count at any size
would need a redrive's new run to be marked in visibility (a search attribute), so
that the runs it replaced could be counted instead of listed.

Concurrent callers in one API process share one computation (several open dashboards cost one).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, get_args

from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from api.core.visibility import (
    iso,
    job_type,
    list_runs,
    memo_state,
    newer,
    run_tenant,
    runs_of,
    search_attribute,
    tenant_clause,
)
from api.dead_letters.service import DEAD, DISCARDED_WORKFLOW
from api.jobs.service import load_job, running_phase
from common.models import JOB_STATUS_KEY, JOB_TYPE_KEY, JobKind, Phase, WaitingOn
from common.temporal import RPC_TIMEOUT
from common.vocabulary import FAILED_BY_ENDING_NAMES, JOB_STATUS

KINDS: tuple[str, ...] = get_args(JobKind)
STATUSES: tuple[str, ...] = tuple(JOB_STATUS[p] for p in Phase)
# Past this many runs in one list the counts are estimated (see the module's docstring): at most
# 2 pages of running jobs, and 5 pages of dead runs plus 10 look-ups of their job ids' runs.
MAX_LISTED_RUNNING = 2_000
MAX_LISTED_DEAD = 5_000
# Up to this many running jobs that may be sending are described one by one to count `processing`
# exactly; past it the counts are estimated. 200 describes take a few tens of ms on one server.
MAX_DESCRIBED_RUNNING = 200
DESCRIBES_AT_ONCE = 20
# What a job waits on (JobState.waiting_on) when its user's preferences hold it: the stats' `deferred` and
# `digested`.
PREFERENCE_WAITS = (WaitingOn.QUIET_HOURS, WaitingOn.DIGEST)
# ExecutionStatus as visibility writes it.
_TERMINATED, _TIMED_OUT, _CANCELED, _FAILED, _RUNNING = "Terminated", "TimedOut", "Canceled", "Failed", "Running"
_STATUS_NAMES = {
    WorkflowExecutionStatus.RUNNING: _RUNNING,
    WorkflowExecutionStatus.COMPLETED: "Completed",
    WorkflowExecutionStatus.FAILED: _FAILED,
    WorkflowExecutionStatus.CANCELED: _CANCELED,
    WorkflowExecutionStatus.TERMINATED: _TERMINATED,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "ContinuedAsNew",
    WorkflowExecutionStatus.TIMED_OUT: _TIMED_OUT,
}


def status_word(herald_status: str | None, execution_status: str) -> str | None:
    """A run's `/jobs/{id}/status` word from what visibility knows of it; None: not a job's run."""
    if herald_status == Phase.FAILED.value or execution_status in FAILED_BY_ENDING_NAMES:
        return JOB_STATUS[Phase.FAILED]
    if execution_status == _CANCELED:
        return JOB_STATUS[Phase.CANCELLED]
    if execution_status == _FAILED:
        return JOB_STATUS[Phase.FAILED]
    if execution_status == "ContinuedAsNew":
        return None  # its next run is the one that counts
    if execution_status == _RUNNING:
        return herald_status if herald_status in STATUSES else JOB_STATUS[Phase.QUEUED]
    # Completed: what the job recorded at its end (a v0 run may have completed with another word).
    final = {JOB_STATUS[p] for p in Phase if p.final}
    return herald_status if herald_status in final else JOB_STATUS[Phase.COMPLETED]


@dataclass
class Stats:
    counts: dict[str, dict[str, int]]
    dlq: int
    # Running jobs waiting on their user's preferences (a subset of `delayed`), by what they wait on.
    deferred: int = 0
    digested: int = 0
    approximate: bool = False


@dataclass
class RecentJob:
    job_id: str
    run_id: str
    type: str
    status: str
    created_at: str | None
    finished_at: str | None = None
    tenant: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


# ---- counts ----------------------------------------------------------------------------------
_computing: dict[tuple[int, str], asyncio.Future[Stats]] = {}


async def job_stats(client: Client, where: str = "") -> Stats:
    """The counts (`where`: tenant_clause's restriction, or none); callers that ask while they are being
    read get the same answer."""
    key = (id(client), where)
    shared = _computing.get(key)
    if shared is None:
        shared = asyncio.ensure_future(_job_stats(client, where))
        _computing[key] = shared
        shared.add_done_callback(lambda _: _computing.pop(key, None))
    return await asyncio.shield(shared)


async def _job_stats(client: Client, where: str) -> Stats:
    counts = {kind: dict.fromkeys(STATUSES, 0) for kind in KINDS}
    suppressed_word = JOB_STATUS[Phase.SUPPRESSED]
    *by_kind, (running, waiting, running_complete), (dlq, superseded, dead_complete) = await asyncio.gather(
        *(
            client.count_workflows(
                f"{JOB_TYPE_KEY.name} = '{kind}'{where} GROUP BY ExecutionStatus", rpc_timeout=RPC_TIMEOUT
            )
            for kind in KINDS
        ),
        _running(client, where),
        _dead_letters(client, where),
    )
    # A suppressed job's run completed (visibility groups by ExecutionStatus only): its HeraldStatus tells.
    suppressed = await asyncio.gather(
        *(
            client.count_workflows(
                f"{JOB_TYPE_KEY.name} = '{kind}' AND {JOB_STATUS_KEY.name} = '{suppressed_word}' "
                f"AND ExecutionStatus = 'Completed'{where}",
                rpc_timeout=RPC_TIMEOUT,
            )
            for kind in KINDS
        )
    )
    for kind, answer in zip(KINDS, by_kind):
        for group in answer.groups:
            execution_status = str(group.group_values[0]) if group.group_values else ""
            if execution_status == _RUNNING:
                counts[kind][JOB_STATUS[Phase.QUEUED]] += group.count  # sorted out below
            else:
                word = status_word(None, execution_status)
                if word:
                    counts[kind][word] += group.count
    for kind, answer in zip(KINDS, suppressed):
        moved = min(answer.count, counts[kind][JOB_STATUS[Phase.COMPLETED]])
        counts[kind][JOB_STATUS[Phase.COMPLETED]] -= moved
        counts[kind][suppressed_word] += moved
    for (kind, word), number in running.items():
        if kind in counts and word in counts[kind] and word != JOB_STATUS[Phase.QUEUED]:
            moved = min(number, counts[kind][JOB_STATUS[Phase.QUEUED]])
            counts[kind][JOB_STATUS[Phase.QUEUED]] -= moved
            counts[kind][word] += moved
    for kind, word in superseded:
        if kind in counts and word in counts[kind]:
            counts[kind][word] = max(0, counts[kind][word] - 1)
    return Stats(
        counts=counts,
        dlq=dlq,
        deferred=waiting.get(WaitingOn.QUIET_HOURS, 0),
        digested=waiting.get(WaitingOn.DIGEST, 0),
        approximate=not (running_complete and dead_complete),
    )


async def _running(client: Client, where: str) -> tuple[dict[tuple[str, str], int], dict[str, int], bool]:
    """Running jobs that are not `queued`, by (type, status word), as the status route reads them; those
    waiting on their user's preferences, by what they wait on (JobState.waiting_on: PREFERENCE_WAITS); and
    whether that is exact.

    A job whose memo says it waits until a later time is `delayed` without a describe: nothing of it is in
    flight, and a night of quiet hours holding thousands of jobs then costs list pages, not describes.
    Past MAX_LISTED_RUNNING of them that are not `queued` in visibility, one COUNT per type gives
    the rest, which count as `delayed`; past MAX_LISTED_RUNNING `queued` ones, or MAX_DESCRIBED_RUNNING
    that may be sending, each counts under its HeraldStatus.
    """
    running = f"{JOB_TYPE_KEY.name} IS NOT NULL{where} AND ExecutionStatus = '{_RUNNING}'"
    not_queued = f"{running} AND {JOB_STATUS_KEY.name} != '{Phase.QUEUED.value}'"
    (listed, complete), (queued, all_queued) = await asyncio.gather(
        list_runs(client, not_queued, limit=MAX_LISTED_RUNNING),
        # A job deferred or digested after it started `queued` keeps that HeraldStatus: only its memo tells.
        list_runs(client, f"{running} AND {JOB_STATUS_KEY.name} = '{Phase.QUEUED.value}'", limit=MAX_LISTED_RUNNING),
    )
    words: dict[str, tuple[str, str]] = {}  # run id -> (type, word)
    waiting = dict.fromkeys(PREFERENCE_WAITS, 0)
    maybe_sending: list[WorkflowExecutionInfo] = []
    for info in listed + queued:
        kind = job_type(client, info)
        word = status_word(search_attribute(client, info, JOB_STATUS_KEY.name), _RUNNING)
        if not (kind and word):
            continue
        if word in (JOB_STATUS[Phase.QUEUED], JOB_STATUS[Phase.DELAYED]):
            state = await memo_state(client, info)
            if state.get("phase") == Phase.DELAYED.value and state.get("waiting_on") in waiting:
                waiting[state["waiting_on"]] += 1
            if _waits(state):
                word = JOB_STATUS[Phase.DELAYED]
            else:
                maybe_sending.append(info)
        words[info.execution.run_id] = (kind, word)
    described = all_queued and len(maybe_sending) <= MAX_DESCRIBED_RUNNING
    if described:
        limit = asyncio.Semaphore(DESCRIBES_AT_ONCE)
        read = await asyncio.gather(*(_live_word(client, info, limit) for info in maybe_sending))
        for info, word in zip(maybe_sending, read):
            if word:
                words[info.execution.run_id] = (words[info.execution.run_id][0], word)
    tally: dict[tuple[str, str], int] = {}
    for kind_word in words.values():
        tally[kind_word] = tally.get(kind_word, 0) + 1
    if complete:
        return tally, waiting, described
    totals = await asyncio.gather(
        *(
            client.count_workflows(
                not_queued.replace(f"{JOB_TYPE_KEY.name} IS NOT NULL", f"{JOB_TYPE_KEY.name} = '{kind}'"),
                rpc_timeout=RPC_TIMEOUT,
            )
            for kind in KINDS
        )
    )
    for kind, total in zip(KINDS, totals):
        seen = sum(1 for info in listed if job_type(client, info) == kind)
        key = (kind, JOB_STATUS[Phase.DELAYED])
        tally[key] = tally.get(key, 0) + max(0, total.count - seen)
    return tally, waiting, False


def _waits(state: dict[str, Any]) -> bool:
    """Whether a job's state says it waits on a timer until a later time: nothing of it is in flight."""
    not_before = state.get("not_before") if state.get("phase") == Phase.DELAYED.value else None
    return bool(not_before) and datetime.fromisoformat(str(not_before).replace("Z", "+00:00")) > datetime.now(UTC)


async def _live_word(client: Client, info: WorkflowExecutionInfo, limit: asyncio.Semaphore) -> str | None:
    """A running job's word as GET /jobs/{id}/status reads it; None: ended meanwhile, or unreadable."""
    async with limit:
        try:
            description = await client.get_workflow_handle(
                info.execution.workflow_id, run_id=info.execution.run_id
            ).describe(rpc_timeout=RPC_TIMEOUT)
        except RPCError:
            return None
    if description.status != WorkflowExecutionStatus.RUNNING:
        return None  # visibility's count of it may predate its end: it stays where that put it
    phase = await running_phase(description)
    return JOB_STATUS[phase] if phase else None


async def _dead_letters(client: Client, where: str) -> tuple[int, list[tuple[str, str]], bool]:
    """The DLQ's size; the (type, status word) of each counted run that is not its job's latest;
    and whether that is exact."""
    dead_query = f"{JOB_TYPE_KEY.name} IS NOT NULL{where} AND {DEAD}"
    dead, complete = await list_runs(client, dead_query, limit=MAX_LISTED_DEAD)
    if not complete:
        total, discarded = await asyncio.gather(
            client.count_workflows(dead_query, rpc_timeout=RPC_TIMEOUT),
            client.count_workflows(f"WorkflowType = '{DISCARDED_WORKFLOW}'{where}", rpc_timeout=RPC_TIMEOUT),
        )
        return max(0, total.count - discarded.count), [], False
    if not dead:
        return 0, [], True
    runs = await runs_of(client, {info.execution.workflow_id for info in dead})
    latest: dict[str, WorkflowExecutionInfo] = {}
    latest_job_run: dict[str, WorkflowExecutionInfo] = {}
    for info in runs:
        job_id = info.execution.workflow_id
        if newer(info, latest.get(job_id)):
            latest[job_id] = info
        if job_type(client, info) and newer(info, latest_job_run.get(job_id)):
            latest_job_run[job_id] = info
    dlq = sum(
        1 for info in dead if latest.get(info.execution.workflow_id, info).execution.run_id == info.execution.run_id
    )
    # Counted runs that a newer run of the same job replaced (only a closed dead run can be run
    # again), each under its own bucket. A discard's tombstone is never counted, so the discarded
    # run stays its job's counted run, and the job reads failed.
    superseded = []
    for info in runs:
        kind = job_type(client, info)
        newest = latest_job_run.get(info.execution.workflow_id)
        if kind and newest is not None and newest.execution.run_id != info.execution.run_id:
            word = status_word(None, _execution_status(info))
            if word and _execution_status(info) != _RUNNING:
                superseded.append((kind, word))
    return dlq, superseded, True


def _execution_status(info: WorkflowExecutionInfo) -> str:
    try:
        return _STATUS_NAMES.get(WorkflowExecutionStatus(info.status), "")
    except ValueError:
        return ""


# ---- the latest jobs -------------------------------------------------------------------------
async def recent_jobs(
    client: Client, default_tenant: str, limit: int = 20, kind: JobKind | None = None, tenant: str | None = None
) -> list[RecentJob]:
    """The latest `limit` jobs (of `tenant`, or every tenant's), newest first, one per job id (its latest
    run), each with its tenant.

    Visibility's words for a finished run are exact; a running job is read like
    GET /jobs/{id}/status does (describe), so `processing` and a retry's `delayed` show here.
    """
    query = f"{JOB_TYPE_KEY.name} = '{kind}'" if kind else f"{JOB_TYPE_KEY.name} IS NOT NULL"
    query += tenant_clause(tenant, default_tenant)
    # A redriven job has an older run further down; read a little more than asked to fill the page.
    infos, _ = await list_runs(client, query, limit=limit + 10)
    seen: set[str] = set()
    jobs: list[RecentJob] = []
    for info in infos:
        job_id = info.execution.workflow_id
        if job_id in seen:
            continue
        seen.add(job_id)
        state = await memo_state(client, info)
        word = status_word(search_attribute(client, info, JOB_STATUS_KEY.name), _execution_status(info))
        if word is None:
            continue
        jobs.append(
            RecentJob(
                job_id=job_id,
                run_id=info.execution.run_id,
                type=job_type(client, info) or state.get("kind", ""),
                status=word,
                created_at=state.get("created_at") or iso(info.start_time),
                finished_at=iso(info.close_time) if info.HasField("close_time") else None,
                tenant=run_tenant(client, info, default_tenant),
            )
        )
        if len(jobs) == limit:
            break
    await asyncio.gather(*(_read_live(client, job) for job in jobs if job.finished_at is None))
    return jobs


async def _read_live(client: Client, job: RecentJob) -> None:
    try:
        view = await load_job(client, job.job_id, None)  # the admin's: every tenant's
    except Exception:  # noqa: BLE001 - gone or unreadable meanwhile: keep what visibility said
        return
    job.status = JOB_STATUS[view.phase]
