"""Keeps each job's attempt log across the attempts of its send, without a signal.

Temporal retries an activity on the server and writes only the last attempt to history. So
every attempt adds its own record to the log it inherited and hands the log on:
- a failed attempt records the log as its heartbeat details, which Temporal gives to the next
  attempt (and shows in describe, where the API reads it during a backoff), and raises its
  error (a ConciseError: the reason, no stack trace or cause), with the log as the error's
  details where the workflow may read them: when the send gives up, or the attempt was local.
  An error Temporal retries goes without the log: the server keeps it as the last failure only
  up to 4 KiB (common/failures.py), and 25 records with their response excerpts take far more;
- a successful attempt returns the log in its result (`SendResult.deliveries`).
A local activity (the job's first attempt) does the same except the heartbeat.

While an attempt that is an ordinary activity runs, it heartbeats every couple of seconds with
the log it inherited and which attempt it is (the `heartbeat_timeout` of workflows/job_state.py).
If its worker dies, Temporal times the attempt out on the missing heartbeat and retries it; the
next attempt finds the dead one's record missing from the log it inherits (attempts are
numbered) and records it as lost. If the worker is stopped (SIGTERM) and the attempt outlives the
shutdown grace, it is handed back: it fails with a record saying so, and Temporal retries it.

A first attempt that is a local activity has no heartbeat: if its worker dies, Temporal times out
the workflow task it ran in, and the next worker runs that task again, and with it the attempt,
again as attempt 1 (nothing of the first try was recorded). So the workflow marks a first attempt
that may be such a rerun (`AttemptContext.maybe_rerun`: the run was rebuilt by replay, or its
first workflow task saw more than its own start; never on the happy path), and that attempt reads
the run's history: each workflow task that a worker started and never finished (timed out, since
the last one completed) was an attempt cut short. They are logged as interrupted, and this
attempt takes the next number.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from common.failures import ConciseError, error_text
from common.logs import log_event
from common.metrics import FAILED, SUCCEEDED, count_attempt
from common.models import AttemptContext, AttemptLog, AttemptRecord, FailureDetail, SendInput, SendResult
from common.temporal import RPC_TIMEOUT

# Enough history for an operator; the log travels in payloads and the memo, so it stays small.
MAX_DELIVERIES_KEPT = 25
# How often a running attempt heartbeats (at most; a quarter of a short heartbeat timeout). The SDK
# sends the server at most one heartbeat per 80% of the timeout and drops the ones in between, and
# an attempt that ends before its first beat sends none at all.
HEARTBEAT_EVERY_S = 2.0
# An attempt's error, in the log and as the failure's message, as long as a response excerpt at most:
# an SMTP server's multi-line answer or an exception's text can be any length.
ERROR_CHARS = 512
# How near its schedule-to-close deadline a failed attempt counts as possibly the send's last: the
# server retries only when the next attempt starts before it (by the server's clock).
DEADLINE_MARGIN = timedelta(seconds=10)
LOST_HEARTBEAT = "lost: the worker stopped heartbeating"
LOST_TIMEOUT = "lost: no outcome within the attempt's start-to-close timeout"
HANDED_BACK = "handed back: the worker shut down before the attempt finished"
INTERRUPTED = "interrupted: the worker stopped during this attempt"
# The error type of an attempt handed back at its worker's shutdown: Temporal retries it at once.
WORKER_SHUT_DOWN = "WorkerShutDown"


@dataclass
class InFlight:
    """The attempt a heartbeat comes from (the heartbeat's second detail; the first is the log)."""

    attempt: int
    started_at: str
    server_started_at: str | None
    alive_at: str


class AttemptLogInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _AttemptLogInbound(next)


def attempt_context(input: ExecuteActivityInput) -> AttemptContext | None:
    message = input.args[0] if input.args else None
    return message.context if isinstance(message, SendInput) else None


class _AttemptLogInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        context = attempt_context(input)
        if context is None:  # not a send (nothing of Herald's today): nothing to log
            return await super().execute_activity(input)
        if info.is_local and context.maybe_rerun and context.first_attempt == 1 and info.attempt == 1:
            cut_short = await _interrupted(info)
            if cut_short:
                context = replace(context, first_attempt=len(cut_short) + 1, earlier=cut_short)
        number = context.job_attempt(info.attempt)
        inherited = _inherited_log(info, context, number)
        started = _now()
        log_event("attempt.picked", job_id=info.workflow_id, activity=info.activity_type, attempt=number)
        beating = _start_heartbeats(info, inherited, InFlight(number, started, _iso(info.started_time), started))
        try:
            result = await super().execute_activity(input)
        except asyncio.CancelledError as exc:
            await _stop(beating)
            if activity.is_worker_shutdown():
                # The shutdown grace ran out: hand the attempt back, logged, for another worker to retry.
                raise self._failed(
                    info, context, number, started, inherited, ApplicationError(HANDED_BACK, type=WORKER_SHUT_DOWN)
                ) from exc
            raise
        except Exception as exc:  # every failure is logged, then raised again
            await _stop(beating)
            # The cause shows in the worker's log; Temporal gets the ConciseError alone.
            raise self._failed(info, context, number, started, inherited, exc) from exc
        await _stop(beating)
        log_event("attempt.succeeded", job_id=info.workflow_id, attempt=number)
        count_attempt(SUCCEEDED)
        record = AttemptRecord(
            attempt=number,
            started_at=started,
            finished_at=_now(),
            succeeded=True,
            server_started_at=None if info.is_local else _iso(info.started_time),
            status_code=getattr(result, "status_code", None),
            response_excerpt=getattr(result, "response_excerpt", None),
        )
        if isinstance(result, SendResult):
            result.deliveries = _kept(inherited + [record])
        return result

    def _failed(
        self,
        info: activity.Info,
        context: AttemptContext,
        number: int,
        started: str,
        inherited: list[AttemptRecord],
        exc: Exception,
    ) -> ConciseError:
        """The same error, with the attempt log as its details where the workflow may read them (the
        far side's answer is in the log)."""
        application = exc if isinstance(exc, ApplicationError) else None
        detail = _failure_detail(application)
        record = AttemptRecord(
            attempt=number,
            started_at=started,
            finished_at=_now(),
            succeeded=False,
            error=_bounded(error_text(exc)),
            retryable=not (application and application.non_retryable),
            status_code=detail.status_code if detail else None,
            response_excerpt=detail.response_excerpt if detail else None,
            server_started_at=None if info.is_local else _iso(info.started_time),
        )
        log = _kept(inherited + [record])
        log_event(
            "attempt.failed", job_id=info.workflow_id, attempt=number, error=record.error, retryable=record.retryable
        )
        count_attempt(FAILED)
        if not info.is_local:
            # The next attempt starts from here; describe shows it meanwhile.
            activity.heartbeat(AttemptLog(log))
        error_type = application.type if application else type(exc).__name__
        next_retry_delay = application.next_retry_delay if application else None
        # An attempt whose backoff the workflow waits out itself goes back to it, log and all, whatever
        # the error: the record says whether it may be retried. Only one handed back at a shutdown is
        # retried by Temporal at once, as an attempt lost with its worker is.
        held = context.own_backoff and error_type != WORKER_SHUT_DOWN
        retried = record.retryable and not held and _retried(info, error_type, next_retry_delay)
        return ConciseError(
            record.error or "attempt failed",
            *([] if retried else [AttemptLog(log)]),
            type=error_type,
            non_retryable=held or not record.retryable,
            next_retry_delay=next_retry_delay,
        )


def _retried(info: activity.Info, error_type: str | None, next_retry_delay: timedelta | None) -> bool:
    """Whether Temporal surely retries this retryable failed attempt, so the workflow never reads its
    error: not a local activity's (the workflow reads each), nor one of the last attempt, nor one so
    near the schedule-to-close deadline that the next attempt may not fit before it."""
    policy = info.retry_policy
    if info.is_local or policy is None:
        return False
    if policy.maximum_attempts and info.attempt >= policy.maximum_attempts:
        return False
    if error_type in (policy.non_retryable_error_types or ()):
        return False
    if info.schedule_to_close_timeout:
        wait = next_retry_delay or _backoff(policy, info.attempt)
        deadline = info.scheduled_time + info.schedule_to_close_timeout
        return datetime.now(UTC) + wait + DEADLINE_MARGIN < deadline
    return True


def _backoff(policy: RetryPolicy, attempt: int) -> timedelta:
    """The server's wait after failed attempt `attempt` (its default maximum: 100 initial intervals)."""
    wait = policy.initial_interval * policy.backoff_coefficient ** (attempt - 1)
    return min(wait, policy.maximum_interval or policy.initial_interval * 100)


def _bounded(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def _inherited_log(info: activity.Info, context: AttemptContext, number: int) -> list[AttemptRecord]:
    """The log so far: the last heartbeat's (or the workflow's), plus a record of every lost attempt."""
    in_flight = None
    if info.heartbeat_details:
        carried = info.heartbeat_details[0]
        # Decoded without a type hint: a dict of the AttemptLog dataclass.
        log = [AttemptRecord(**r) for r in carried.get("deliveries", [])] if isinstance(carried, dict) else []
        if len(info.heartbeat_details) > 1 and isinstance(info.heartbeat_details[1], dict):
            in_flight = info.heartbeat_details[1]
    else:
        log = list(context.earlier)
    # Every attempt ends with a record in the log it hands on (its result, its error, its last
    # heartbeat). One missing before this one never told anyone how it ended: it was lost.
    now = _now()
    for missing in range(max((r.attempt for r in log), default=0) + 1, number):
        seen = in_flight if in_flight and in_flight.get("attempt") == missing else None
        log.append(
            AttemptRecord(
                attempt=missing,
                started_at=seen["started_at"] if seen else now,
                finished_at=now,
                succeeded=False,
                error=_lost_reason(info, seen),
                server_started_at=seen.get("server_started_at") if seen else None,
            )
        )
        log_event("attempt.lost", job_id=info.workflow_id, attempt=missing, error=log[-1].error)
    return _kept(log)


async def _interrupted(info: activity.Info) -> list[AttemptRecord]:
    """The first attempts cut short before this one: the workflow tasks (this one's earlier tries)
    that a worker started and never finished, from the run's history and its pending workflow task."""
    if not info.workflow_id:
        return []
    log_event("attempt.rerun_check", job_id=info.workflow_id)
    try:
        handle = activity.client().get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
        history = await handle.fetch_history(rpc_timeout=RPC_TIMEOUT)
        pending = (await handle.describe(rpc_timeout=RPC_TIMEOUT)).raw_description.pending_workflow_task
    except (RuntimeError, RPCError) as exc:  # no client here, or Temporal unreachable: log nothing more
        log_event("attempt.rerun_unknown", job_id=info.workflow_id, error=str(exc))
        return []
    tries: list[tuple[str, str]] = []  # (started, timed out) of each unfinished workflow task
    started = ""
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            tries = []  # the attempt was scheduled after the last completed task, if at all
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            started = _iso(event.event_time.ToDatetime(UTC)) or ""
        elif (
            event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
            and event.workflow_task_timed_out_event_attributes.timeout_type == TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE
        ):
            tries.append((started, _iso(event.event_time.ToDatetime(UTC)) or ""))
    # A try after one that raised the task's attempt is not written to history (a transient task):
    # the pending task's attempt counts those.
    now = _now()
    while tries and len(tries) < pending.attempt - 1:
        tries.append((tries[-1][1], now))
    records = [
        AttemptRecord(
            attempt=n, started_at=begun, finished_at=ended, succeeded=False, error=INTERRUPTED, interrupted=True
        )
        for n, (begun, ended) in enumerate(tries, start=1)
    ]
    for record in records:
        log_event("attempt.interrupted", job_id=info.workflow_id, attempt=record.attempt, error=INTERRUPTED)
    return records


def _lost_reason(info: activity.Info, seen: dict[str, Any] | None) -> str:
    """Why an attempt was lost: its heartbeats stopped (its worker died), or it ran out of time."""
    if not info.heartbeat_timeout:
        return LOST_TIMEOUT
    if seen and info.start_to_close_timeout and seen.get("server_started_at") and seen.get("alive_at"):
        lived = datetime.fromisoformat(seen["alive_at"]) - datetime.fromisoformat(seen["server_started_at"])
        # Still beating when its start-to-close was (nearly) up: it timed out alive.
        if lived >= info.start_to_close_timeout - info.heartbeat_timeout:
            return LOST_TIMEOUT
    return LOST_HEARTBEAT


def _start_heartbeats(info: activity.Info, log: list[AttemptRecord], in_flight: InFlight) -> asyncio.Task[None] | None:
    """Heartbeat the inherited log while the attempt runs (not a local activity: it cannot)."""
    if info.is_local or not info.heartbeat_timeout:
        return None
    every = min(HEARTBEAT_EVERY_S, info.heartbeat_timeout.total_seconds() / 4)

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            in_flight.alive_at = _now()
            activity.heartbeat(AttemptLog(log), asdict(in_flight))

    return asyncio.create_task(beat(), name=f"heartbeat-{info.workflow_id}-{info.attempt}")


async def _stop(beating: asyncio.Task[None] | None) -> None:
    if beating is not None:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating


def _failure_detail(exc: ApplicationError | None) -> FailureDetail | None:
    if exc and exc.details and isinstance(exc.details[0], FailureDetail):
        return exc.details[0]
    return None


def _kept(log: list[AttemptRecord]) -> list[AttemptRecord]:
    return log[-MAX_DELIVERIES_KEPT:]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _now() -> str:
    return datetime.now(UTC).isoformat()
