"""`HERALD_<CHANNEL>_RATE_LIMIT` for every send, enforced where the sends happen: on the worker.

The limit is Temporal's task-queue rate limit (the worker's `max_task_queue_activities_per_second`),
which the server's matching service enforces across all workers by counting the activity tasks it
hands out. Two kinds of send would slip past it:

- a local activity (a job's first attempt, workflows/job_tracking.py) never passes through the
  queue. On a rate-limited worker it declines before doing anything (no connection, no attempt
  logged, no metric): a benign FirstAttemptDeclined failure, upon which the job sends attempt 1
  onwards as an ordinary activity, through the queue. The API need not know the limit: every job
  tries its first attempt locally and only a rate-limited worker turns it down.
- a batch slice (activities/batch.py) counts once however many items it sends. On a rate-limited
  worker a slice of more than one item declines (`SliceOutcomes.declined`) without sending, and
  its batch (workflows/batch.py) sends one item per activity from then on: each item one task.

The same holds for `HERALD_TENANT_RATE_LIMIT`, the per-tenant cap (common/task_queue_config.py): Temporal
enforces it on the activity tasks it hands out, per fairness key (tenant), so a worker with a cap sends
every send through the queue too.

A third, an eager activity (run by the worker that scheduled it, handed back with its workflow task),
never enters the queue either: a rate-limited worker turns eager execution off (worker.py).

Whether a worker is rate-limited is read from the settings it was built with (worker.py).
"""

from __future__ import annotations

from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from common.models import CHANNELS, SendInput
from common.names import FIRST_ATTEMPT_DECLINED
from common.settings import Settings


def sends_through_queue(settings: Settings, channel: str) -> bool:
    """Whether every send of this channel must be one activity task: the channel has a rate limit, or
    the tenants a cap (both enforced by the server on the activity tasks it hands out)."""
    return settings.rate_limit(channel) is not None or settings.tenant_rate_limit is not None


def rate_limited(settings: Settings, kind: str) -> bool:
    """Whether the task queue of this kind of job (email, sms, webhook, cleanup, report) has a rate limit
    (its channel's or the tenants' cap)."""
    return sends_through_queue(settings, CHANNELS[kind])


def first_attempt_declined() -> ApplicationError:
    return ApplicationError(
        "declined as a local activity: this channel has a rate limit, which only counts sends that pass "
        "through its task queue",
        type=FIRST_ATTEMPT_DECLINED,
        non_retryable=True,
        # Not a failure of the job: the SDK neither logs it as an error nor counts it as a failed activity.
        category=ApplicationErrorCategory.BENIGN,
    )


class RateLimitInterceptor(Interceptor):
    """Installed first on a task queue's worker (outside the attempt log): `limited`, whether the queue's
    sends are rate-limited (sends_through_queue)."""

    def __init__(self, limited: bool) -> None:
        self.limited = limited

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        # An unlimited queue's activities run exactly as without this interceptor.
        return _DeclineLocalSends(next) if self.limited else next


class _DeclineLocalSends(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        # Only sends: an SMS's quota slot (take_sms_slot) is a local activity that sends nothing.
        if activity.info().is_local and input.args and isinstance(input.args[0], SendInput):
            raise first_attempt_declined()
        return await super().execute_activity(input)
