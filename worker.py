"""The Herald worker: one Temporal worker per channel task queue, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Interceptor, Worker

from activities.attempt_log import AttemptLogInterceptor
from activities.batch import BatchActivities
from activities.digests import DigestActivities
from activities.email import EmailActivities
from activities.maintenance import MaintenanceActivities
from activities.preferences import PreferenceActivities
from activities.rate_limit import RateLimitInterceptor, sends_through_queue
from activities.reports import ReportActivities
from activities.sms import SmsActivities
from activities.sms_quota import SmsQuotaActivities
from activities.tenant_header import TenantHeaderInterceptor
from activities.users import TypedEmailActivities
from activities.webhook import WebhookActivities
from common.builtin_schedules import ensure_at_start
from common.logs import configure_logging, redact_secrets_of
from common.metrics import configure_tenant_labels
from common.models import QUEUE_CHANNELS, TASK_QUEUES
from common.runtime import exit_skipping_teardown
from common.settings import Settings, StartupRefused, get_settings
from common.task_queue_config import configure_job_queues
from common.temporal import WORKFLOW_RUNNER, connect_when_up, ensure_search_attributes, worker_runtime
from workflows.batch import BatchWorkflow
from workflows.batch_chunks import ChunkedBatchWorkflow
from workflows.callback import CallbackWorkflow
from workflows.cleanup import CleanupWorkflow
from workflows.digest import DigestWorkflow
from workflows.idempotency import IdempotencyKeyWorkflow
from workflows.notification import NotificationWorkflow
from workflows.report import ReportWorkflow
from workflows.sms_quota import SmsQuotaWorkflow
from workflows.user import UserWorkflow

WORKFLOWS = [
    NotificationWorkflow,
    CleanupWorkflow,
    CallbackWorkflow,
    ReportWorkflow,
    BatchWorkflow,
    ChunkedBatchWorkflow,
    # A user's contact data, on ENTITY_TASK_QUEUE (common/models.py).
    UserWorkflow,
    # A user's digest for one topic, on ENTITY_TASK_QUEUE too (workflows/digest.py).
    DigestWorkflow,
    # An SMS quota and an Idempotency-Key now run on INTAKE_TASK_QUEUE, which the API serves
    # (api/core/intake.py) and this worker must not poll (a stopped worker would hold its
    # tasks). Registered here still for the runs started on herald-maintenance before that
    # move; they go when none is open (workflows/patches.py, QUEUE_MOVES["intake"]).
    SmsQuotaWorkflow,
    IdempotencyKeyWorkflow,
]
log = logging.getLogger("herald.worker")
# How long after the shutdown grace the worker still waits for its last sends to report back.
DRAIN_MARGIN_S = 3.0


def activities_by_queue(settings: Settings, client: Client | None = None) -> dict[str, list]:
    """`client`: the worker's, with which a typed notification's send reads its user and an SMS the API
    did not count takes its quota slot."""
    email, sms = EmailActivities(settings), SmsActivities(settings)
    typed = TypedEmailActivities(settings, client, email)
    webhook, maintenance = WebhookActivities(settings), MaintenanceActivities(settings)
    # A batch's slices send with the same channel objects (activities/batch.py).
    batch = BatchActivities(settings, email, sms, webhook)
    # check_preferences: a local activity of a notification for a user, before its send (workflows/job_tracking.py).
    preferences = PreferenceActivities(client)
    # join_digest, leave_digest: local activities of a digested notification; send_digest: a digest's email.
    digests = DigestActivities(settings, client, email)
    return {
        TASK_QUEUES["email"]: [
            email.send_email,
            batch.send_email_slice,
            typed.send_typed_email,
            preferences.check_preferences,
            digests.join_digest,
            digests.leave_digest,
            digests.send_digest,
        ],
        # take_sms_slot: a local activity of an SMS's run that the API did not count (workflows/notification.py).
        TASK_QUEUES["sms"]: [
            sms.send_sms,
            batch.send_sms_slice,
            SmsQuotaActivities(settings, client).take_sms_slot,
            preferences.check_preferences,
        ],
        TASK_QUEUES["webhook"]: [webhook.deliver_webhook, batch.deliver_webhook_slice],
        # Reports share the maintenance queue (TASK_QUEUES["report"]).
        TASK_QUEUES["cleanup"]: [maintenance.run_cleanup, ReportActivities(settings).build_report],
    }


def activity_interceptors(settings: Settings, channel: str) -> list[Interceptor]:
    """A channel's workers' interceptors, outermost first: on a rate-limited queue a local send declines
    before the attempt log sees it (activities/rate_limit.py)."""
    return [
        RateLimitInterceptor(sends_through_queue(settings, channel)),
        # The run's tenant, for the attempts' `tenant` label (added by the workflow, read by the activity).
        TenantHeaderInterceptor(),
        AttemptLogInterceptor(),
    ]


def build_workers(client: Client, settings: Settings) -> list[Worker]:
    """A worker per task queue, so a slow channel cannot starve the others."""
    # Herald's metrics (common/metrics.py) are labelled by the tenants this worker is configured with (its
    # HERALD_API_KEYS); any other tenant's runs count as `other`.
    configure_tenant_labels(settings.tenant_names())
    workers = []
    for queue, activities in activities_by_queue(settings, client).items():
        channel = QUEUE_CHANNELS[queue]
        workers.append(
            Worker(
                client,
                task_queue=queue,
                workflows=WORKFLOWS,
                activities=activities,
                interceptors=activity_interceptors(settings, channel),
                workflow_runner=WORKFLOW_RUNNER,
                max_concurrent_activities=settings.concurrency(channel),
                # A job's first attempt runs as a local activity: the same concurrency applies.
                max_concurrent_local_activities=settings.concurrency(channel),
                # Enforced by the server across all workers, on the activity tasks it hands out: every send
                # goes through it on a rate-limited queue (activities/rate_limit.py).
                max_task_queue_activities_per_second=settings.rate_limit(channel),
                # An eager activity (handed back with the workflow task that scheduled it) never enters the
                # task queue, so no rate limit of the server's counts it: the tenant cap let capped tenants
                # through at up to 2x (docs/tenants.md). Off wherever the server must count every send.
                disable_eager_activity_execution=sends_through_queue(settings, channel),
                # Per Worker (each has its own cache and slots): the process holds up to 4x these.
                max_cached_workflows=settings.worker_max_cached_workflows,
                max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
                # On shutdown, sends in flight get this long to finish before they are handed back.
                graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_grace_seconds),
            )
        )
    return workers


async def main() -> None:
    configure_logging()
    settings = get_settings()
    redact_secrets_of(settings)
    try:
        # Before connecting: a worker without the shared secret and payload key must not start at all.
        settings.require_secrets()
    except StartupRefused as exc:
        print(f"herald worker: refusing to start: {exc}", file=sys.stderr, flush=True)
        exit_skipping_teardown(2)
    client = await connect_when_up(settings, runtime=worker_runtime(settings))
    workers = build_workers(client, settings)
    # Before any start: an older dev server's database may lack a newer attribute (HeraldTenant).
    await ensure_search_attributes(client)
    try:
        # The tenants' weights and send cap, on the job queues (before the first poll).
        await configure_job_queues(client, settings)
    except StartupRefused as exc:
        print(f"herald worker: refusing to start: {exc}", file=sys.stderr, flush=True)
        exit_skipping_teardown(2)
    # The built-in schedules (daily cleanup, token cleanup), created once however many workers start.
    await ensure_at_start(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, stop, sig)
    log.info("worker polling %s", ", ".join(w.task_queue for w in workers))
    async with contextlib.AsyncExitStack() as running:
        for w in workers:
            await running.enter_async_context(w)
        await stop.wait()
        await drain(workers, settings.worker_shutdown_grace_seconds)
    log.info("worker stopped")


def on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if not stop.is_set():
        stop.set()
        return
    # A second signal: stop waiting. The sends still in flight are lost to this worker; Temporal
    # retries each once its heartbeats stop (a first attempt: once its workflow task times out).
    log.warning("second %s: exiting without waiting for the sends in flight", sig.name)
    exit_skipping_teardown(1)


async def drain(workers: list[Worker], grace_seconds: float) -> None:
    """Stop polling on every queue at once; wait for the sends in flight, up to the grace.

    What still runs after the grace is cancelled and handed back to Temporal as a failed attempt
    (activities/attempt_log.py), which retries it on another worker.
    """
    log.info("worker stopping: polling no more; sends in flight have %g s to finish", grace_seconds)
    started = loop_time()
    try:
        # Together: leaving the `async with` blocks would stop the queues one after another.
        await asyncio.wait_for(asyncio.gather(*(w.shutdown() for w in workers)), grace_seconds + DRAIN_MARGIN_S)
    except TimeoutError:
        # The SDK waits for a first attempt (a local activity) whatever the grace. Leave it: its
        # workflow task times out and another worker runs the attempt again (same idempotency key).
        log.warning(
            "worker stopping without the first attempts still running after %g s: "
            "their workflow tasks time out and run again on another worker",
            grace_seconds,
        )
        exit_skipping_teardown(0)
    log.info("worker drained in %.1f s", loop_time() - started)


def loop_time() -> float:
    return asyncio.get_running_loop().time()


if __name__ == "__main__":
    asyncio.run(main())
    exit_skipping_teardown(0)
