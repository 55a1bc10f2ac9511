"""The Herald worker: one Temporal worker per channel task queue, in one process, or in several
(HERALD_WORKER_PROCESSES): this process and children it starts and watches (`WorkerChildren`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

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
from common.runtime import die_with_parent, exit_skipping_teardown, freeze_startup_heap
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


async def main(child: int = 0) -> None:
    """One worker process. `child` 0: the worker as started (with HERALD_WORKER_PROCESSES above 1 it
    also starts and watches the others); k: the k-th child a parent started, which leaves the start-up
    calls to the parent (they ran before it was started) and serves its metrics on the port + k."""
    configure_logging()
    settings = get_settings()
    redact_secrets_of(settings)
    try:
        # Before connecting: a worker without the shared secret and payload key must not start at all.
        settings.require_secrets()
    except StartupRefused as exc:
        print(f"herald worker: refusing to start: {exc}", file=sys.stderr, flush=True)
        exit_skipping_teardown(2)
    if child:
        settings = child_settings(settings, child)
    client = await connect_when_up(settings, runtime=worker_runtime(settings))
    workers = build_workers(client, settings)
    freeze_startup_heap()
    if not child:
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
    children = WorkerChildren(stop) if not child and settings.worker_processes > 1 else None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, stop, sig, children)
    if children is not None and not stop.is_set():
        await children.start(settings.worker_processes - 1)
    which = f" (worker process {child + 1} of {settings.worker_processes}, pid {os.getpid()})" if child else ""
    if children is not None:
        which = f" (worker process 1 of {settings.worker_processes}, pid {os.getpid()})"
    log.info("worker polling %s%s", ", ".join(w.task_queue for w in workers), which)
    async with contextlib.AsyncExitStack() as running:
        for w in workers:
            await running.enter_async_context(w)
        await stop.wait()
        await drain(workers, settings.worker_shutdown_grace_seconds, children)
    code = await children.finish(settings.worker_shutdown_grace_seconds) if children is not None else 0
    log.info("worker stopped")
    if code:
        exit_skipping_teardown(code)


def child_settings(settings: Settings, child: int) -> Settings:
    """A child's settings: its metrics on the parent's port + `child` (beyond the last port: none)."""
    port = settings.worker_metrics_port
    if port:
        port = port + child if port + child <= MAX_PORT else 0
    return settings.model_copy(update={"worker_metrics_port": port})


MAX_PORT = 65535
CHILD_FLAG = "--child"
# A child runs this file (not `-m worker`, which depends on the working directory; the child keeps the
# parent's, where relative HERALD_* paths point).
WORKER_SCRIPT = str(Path(__file__).resolve())
# How long after a child's own grace and drain margin the parent waits for it before killing it.
CHILD_EXIT_MARGIN_S = 2.0


class WorkerChildren:
    """The other worker processes of HERALD_WORKER_PROCESSES, started and watched by the first.

    Each is this file run again (`worker.py --child K PARENT_PID`) with the same environment, in a
    session of its own: a terminal's Ctrl-C or a process-group signal reaches the parent alone, which
    passes SIGTERM and SIGINT on (so each child drains once, as a single worker does); the kernel sends
    it SIGTERM if the parent dies (PR_SET_PDEATHSIG). A child that exits while the worker is not
    stopping stops them all, and the parent exits 1: a supervisor (systemd, an orchestrator, `make
    run`) starts the whole worker again, as it would a single one.
    """

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self.failure: str | None = None
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self, count: int) -> None:
        for k in range(1, count + 1):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                WORKER_SCRIPT,
                CHILD_FLAG,
                str(k),
                str(os.getpid()),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
            self.processes[k] = process
            self._watchers.append(asyncio.create_task(self._watch(k, process)))
            log.info("worker process %d started (pid %d)", k + 1, process.pid)

    async def _watch(self, k: int, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if code == 0 and self.stop.is_set():
            return
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        if self.stop.is_set():
            log.error("worker process %d (pid %d) %s while stopping", k + 1, process.pid, how)
            self.failure = self.failure or f"worker process {k + 1} {how}"
            return
        self.failure = f"worker process {k + 1} {how}"
        log.error(
            "worker process %d (pid %d) %s: stopping every worker process (the worker exits 1, to be started again)",
            k + 1,
            process.pid,
            how,
        )
        self.signal(signal.SIGTERM)
        self.stop.set()

    def signal(self, signum: int) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    async def finish(self, grace_seconds: float) -> int:
        """Once stopping: wait for every child's own drain (they began with this process's), kill any
        still there after its grace; the worker's exit code (1 if a child failed)."""
        try:
            await asyncio.wait_for(
                asyncio.gather(*self._watchers), grace_seconds + DRAIN_MARGIN_S + CHILD_EXIT_MARGIN_S
            )
        except TimeoutError:
            self.failure = self.failure or "a worker process did not stop in time"
            log.error("worker processes still running after %g s: killing them", grace_seconds + DRAIN_MARGIN_S)
            self.signal(signal.SIGKILL)
            await asyncio.gather(*(p.wait() for p in self.processes.values()))
        if self.failure:
            log.error("worker stopping with exit code 1: %s", self.failure)
            return 1
        return 0


def on_signal(stop: asyncio.Event, sig: signal.Signals, children: WorkerChildren | None = None) -> None:
    if children is not None:
        children.signal(sig)  # each child drains (or, at a second signal, exits) as this process does
    if not stop.is_set():
        stop.set()
        return
    # A second signal: stop waiting. The sends still in flight are lost to this worker; Temporal
    # retries each once its heartbeats stop (a first attempt: once its workflow task times out).
    log.warning("second %s: exiting without waiting for the sends in flight", sig.name)
    exit_skipping_teardown(1)


async def drain(workers: list[Worker], grace_seconds: float, children: WorkerChildren | None = None) -> None:
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
        exit_skipping_teardown(await children.finish(grace_seconds) if children is not None else 0)
    log.info("worker drained in %.1f s", loop_time() - started)


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def run(argv: list[str]) -> None:
    """`python -m worker`; `worker.py --child K PARENT_PID`: a child of WorkerChildren."""
    if argv[:1] == [CHILD_FLAG]:
        child, parent = int(argv[1]), int(argv[2])
        die_with_parent(parent)
        asyncio.run(main(child))
    else:
        asyncio.run(main())
    exit_skipping_teardown(0)


if __name__ == "__main__":
    run(sys.argv[1:])
