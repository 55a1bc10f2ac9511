"""Pieces of a job's life that every lifecycle version shares: send options, the callback body."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from common.models import JobSpec, JobState, Phase, RetrySpec, result_url
    from common.vocabulary import family_status


def send_options(spec: JobSpec, retry: RetrySpec | None = None, rate_limited: bool = False) -> dict[str, Any]:
    """Timeouts and the declarative retry policy for a job's send activity (`retry`: what is left;
    `rate_limited`: its task queue has a rate limit)."""
    retry = retry or spec.retry
    attempt = timedelta(seconds=spec.attempt_timeout_s)
    retry_after_cap = timedelta(seconds=spec.retry_after_cap_s)
    waits = retry.backoff_total() + retry_after_cap * (retry.max_attempts - 1)
    options: dict[str, Any] = {
        # A send in flight cannot be taken back: on cancel, wait for the attempt's real outcome, so a
        # job never says "cancelled" about a message that went out.
        "cancellation_type": ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        "retry_policy": retry.policy(),
        "start_to_close_timeout": attempt,
    }
    if not rate_limited:
        # Every attempt plus every wait between attempts, with room for a Retry-After at the cap. Not
        # where a rate limit holds the send in its queue behind a backlog, for as long as that takes:
        # a deadline counted from the scheduling would drop a send that merely waited its turn (each
        # attempt still has its start-to-close, and the attempts their limit).
        options["schedule_to_close_timeout"] = attempt * retry.max_attempts + waits + timedelta(minutes=1)
    if spec.heartbeat_timeout_s:
        # Each attempt heartbeats while it runs (activities/attempt_log.py): one whose worker died is
        # retried once the heartbeats stop, not at the end of its start-to-close. An option of the
        # ScheduleActivityTask command, not a command of its own: replaying older runs is unchanged.
        options["heartbeat_timeout"] = min(timedelta(seconds=spec.heartbeat_timeout_s), attempt)
    return options


def callback_body(state: JobState, timestamp: str) -> dict[str, Any]:
    """The result callback's JSON body, in the words of the routes that created the job."""
    data: dict[str, Any] = {
        "jobId": state.job_id,
        "status": family_status(state.family, state.phase),
        "attempts": state.attempts,
    }
    if state.error and state.phase == Phase.FAILED:
        data["error"] = state.error
    if state.kind == "report" and state.phase == Phase.COMPLETED:
        data["resultUrl"] = result_url(state.job_id)
    return {
        "type": "job.completed" if state.phase == Phase.COMPLETED else "job.failed",
        "timestamp": timestamp,
        "data": data,
    }
