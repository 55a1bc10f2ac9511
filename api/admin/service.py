"""What the operator sees: job counts by type and status, the DLQ's size, and the latest jobs.

Everything is read from Temporal visibility, never kept by the API, in few calls: visibility
has a rate limit of its own per namespace (the server's `frontend.namespaceRPS.visibility`, 10
a second by default, shared with the Web UI and the DLQ routes), so one stats answer makes about
eight, whatever the numbers:

- per job type, one COUNT grouped by the run's ExecutionStatus (the only field the dev server and
  SQL visibility can GROUP BY): a closed run is `completed` (Completed), `failed` (Failed,
  Terminated, TimedOut: as the DLQ has it, api/dead_letters/service.py) or `cancelled` (Canceled);
- a running job is what its `HeraldStatus` search attribute says. That is written at start
  (`queued` or `delayed`) and at the job's end (common/models.py, workflows/job_tracking.py),
  so one list of the running jobs whose HeraldStatus is not `queued` (delayed ones, and finished
  ones whose result callback is still being delivered) sorts them, and the other running jobs
  are `queued`. `processing` is not in visibility (the lifecycle does not write it: a
  visibility write per attempt would cost more than the job), so it counts 0 here, and a job
  waiting on a retry backoff, or whose delay is over, keeps the status it started with;
- a job id counts once, under its latest run. Only a dead letter's job id has older runs: a
  redrive starts the same id again, a discard starts a tombstone run (no HeraldJobType, so never
  counted). One pass over the dead runs (those GET /admin/dlq pages through) finds them: the
  dead runs whose job id has a newer Herald run are taken out of their bucket, and the dead runs
  that are their job's latest run are the DLQ.

Past MAX_LISTED_RUNNING running jobs that are not queued, or MAX_LISTED_DEAD dead runs kept
(within the namespace's retention), the answer is estimated and says so (`approximate`): the
running ones not listed count as `delayed`, and the DLQ is the dead runs less the discarded ones
(redriven jobs' old runs are then still in it, and still count as failed). An exact count at
any size would need a redrive's new run to be marked in visibility (a search attribute), so
that the runs it replaced could be counted instead of listed.

Concurrent callers in one API process share one computation (several open dashboards cost one).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, get_args

from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.client import Client, WorkflowExecutionStatus

from api.core.visibility import iso, job_type, list_runs, memo_state, newer, runs_of, search_attribute
from api.dead_letters.service import DEAD, DISCARDED_WORKFLOW
from api.jobs.service import load_job
from common.models import JOB_STATUS_KEY, JOB_TYPE_KEY, JobKind, Phase
from common.temporal import RPC_TIMEOUT
from common.vocabulary import FAILED_BY_ENDING_NAMES, JOB_STATUS

KINDS: tuple[str, ...] = get_args(JobKind)
STATUSES: tuple[str, ...] = tuple(JOB_STATUS[p] for p in Phase)
# Past this many runs in one list the counts are estimated (see the module's docstring): at most
# 2 pages of running jobs, and 5 pages of dead runs plus 10 look-ups of their job ids' runs.
MAX_LISTED_RUNNING = 2_000
MAX_LISTED_DEAD = 5_000
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
    approximate: bool = False


@dataclass
class RecentJob:
    job_id: str
    run_id: str
    type: str
    status: str
    created_at: str | None
    finished_at: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


# ---- counts ----------------------------------------------------------------------------------
_computing: dict[int, asyncio.Future[Stats]] = {}


async def job_stats(client: Client) -> Stats:
    """The counts; callers that ask while they are being read get the same answer."""
    key = id(client)
    shared = _computing.get(key)
    if shared is None:
        shared = asyncio.ensure_future(_job_stats(client))
        _computing[key] = shared
        shared.add_done_callback(lambda _: _computing.pop(key, None))
    return await asyncio.shield(shared)


async def _job_stats(client: Client) -> Stats:
    counts = {kind: dict.fromkeys(STATUSES, 0) for kind in KINDS}
    *by_kind, (running, running_complete), (dlq, superseded, dead_complete) = await asyncio.gather(
        *(
            client.count_workflows(f"{JOB_TYPE_KEY.name} = '{kind}' GROUP BY ExecutionStatus", rpc_timeout=RPC_TIMEOUT)
            for kind in KINDS
        ),
        _running_not_queued(client),
        _dead_letters(client),
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
    for (kind, word), number in running.items():
        if kind in counts and word in counts[kind] and word != JOB_STATUS[Phase.QUEUED]:
            moved = min(number, counts[kind][JOB_STATUS[Phase.QUEUED]])
            counts[kind][JOB_STATUS[Phase.QUEUED]] -= moved
            counts[kind][word] += moved
    for kind, word in superseded:
        if kind in counts and word in counts[kind]:
            counts[kind][word] = max(0, counts[kind][word] - 1)
    return Stats(counts=counts, dlq=dlq, approximate=not (running_complete and dead_complete))


async def _running_not_queued(client: Client) -> tuple[dict[tuple[str, str], int], bool]:
    """Running jobs whose HeraldStatus is not `queued`, by (type, status word); and whether all were read.

    Past MAX_LISTED_RUNNING of them, one COUNT per type gives the rest, which count as `delayed`.
    """
    query = (
        f"{JOB_TYPE_KEY.name} IS NOT NULL AND ExecutionStatus = '{_RUNNING}' "
        f"AND {JOB_STATUS_KEY.name} != '{Phase.QUEUED.value}'"
    )
    listed, complete = await list_runs(client, query, limit=MAX_LISTED_RUNNING)
    tally: dict[tuple[str, str], int] = {}
    for info in listed:
        kind = job_type(client, info)
        word = status_word(search_attribute(client, info, JOB_STATUS_KEY.name), _RUNNING)
        if kind and word:
            tally[(kind, word)] = tally.get((kind, word), 0) + 1
    if complete:
        return tally, True
    totals = await asyncio.gather(
        *(
            client.count_workflows(
                query.replace(f"{JOB_TYPE_KEY.name} IS NOT NULL", f"{JOB_TYPE_KEY.name} = '{kind}'"),
                rpc_timeout=RPC_TIMEOUT,
            )
            for kind in KINDS
        )
    )
    for kind, total in zip(KINDS, totals):
        seen = sum(number for (k, _), number in tally.items() if k == kind)
        key = (kind, JOB_STATUS[Phase.DELAYED])
        tally[key] = tally.get(key, 0) + max(0, total.count - seen)
    return tally, False


async def _dead_letters(client: Client) -> tuple[int, list[tuple[str, str]], bool]:
    """The DLQ's size; the (type, status word) of each counted run that is not its job's latest;
    and whether that is exact."""
    dead_query = f"{JOB_TYPE_KEY.name} IS NOT NULL AND {DEAD}"
    dead, complete = await list_runs(client, dead_query, limit=MAX_LISTED_DEAD)
    if not complete:
        total, discarded = await asyncio.gather(
            client.count_workflows(dead_query, rpc_timeout=RPC_TIMEOUT),
            client.count_workflows(f"WorkflowType = '{DISCARDED_WORKFLOW}'", rpc_timeout=RPC_TIMEOUT),
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
async def recent_jobs(client: Client, limit: int = 20, kind: JobKind | None = None) -> list[RecentJob]:
    """The latest `limit` jobs, newest first, one per job id (its latest run).

    Visibility's words for a finished run are exact; a running job is read like
    GET /jobs/{id}/status does (describe), so `processing` and a retry's `delayed` show here.
    """
    query = f"{JOB_TYPE_KEY.name} = '{kind}'" if kind else f"{JOB_TYPE_KEY.name} IS NOT NULL"
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
            )
        )
        if len(jobs) == limit:
            break
    await asyncio.gather(*(_read_live(client, job) for job in jobs if job.finished_at is None))
    return jobs


async def _read_live(client: Client, job: RecentJob) -> None:
    try:
        view = await load_job(client, job.job_id)
    except Exception:  # noqa: BLE001 - gone or unreadable meanwhile: keep what visibility said
        return
    job.status = JOB_STATUS[view.phase]
