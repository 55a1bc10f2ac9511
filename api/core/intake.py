"""The intake worker: a Temporal worker inside each API process, for the state a POST touches before it
answers (docs/api.md, "Intake needs only the API and Temporal").

An SMS takes a slot of its number's hourly quota (api/jobs/throttle.py) and a POST with an
`Idempotency-Key` claims the key's record (api/core/idempotency.py): both are updates of small workflows
(SmsQuotaWorkflow, IdempotencyKeyWorkflow), and an update waits for a worker to run it. They run on
INTAKE_TASK_QUEUE, which only API processes poll, so wherever there is an API to answer a POST there is
a worker for its updates: a stopped or busy job worker never holds up an intake. The two workflows have
no activities, so this worker does no I/O of its own.

Started with the app (its lifespan) and kept running in the background: Temporal unreachable at start, or
the worker failing later, is retried with a growing pause; the app meanwhile answers as it does without
Temporal (503), and /readyz says not ready until the worker polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from api.core.temporal import TemporalGateway
from common.models import INTAKE_TASK_QUEUE
from common.temporal import WORKFLOW_RUNNER, ensure_search_attributes
from workflows.idempotency import IdempotencyKeyWorkflow
from workflows.sms_quota import SmsQuotaWorkflow

log = logging.getLogger("herald.api")

INTAKE_WORKFLOWS = [SmsQuotaWorkflow, IdempotencyKeyWorkflow]
# A quota's or a key's next task goes to the replica that ran the last one (its sticky queue); a replica
# that stopped polling hands it back to every replica after this, not after the SDK's default 10 s.
STICKY_WAIT = timedelta(seconds=2)
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0
STOP_TIMEOUT_S = 10.0


def intake_worker(client: Client) -> Worker:
    """A worker for INTAKE_TASK_QUEUE (tests run one beside the job workers of worker.py)."""
    return Worker(
        client,
        task_queue=INTAKE_TASK_QUEUE,
        workflows=INTAKE_WORKFLOWS,
        workflow_runner=WORKFLOW_RUNNER,
        sticky_queue_schedule_to_start_timeout=STICKY_WAIT,
    )


class IntakeWorker:
    """The app's intake worker, run and restarted in the background until stop()."""

    def __init__(self, gateway: TemporalGateway) -> None:
        self.gateway = gateway
        self._worker: Worker | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._attributes_checked = False

    @property
    def polling(self) -> bool:
        return self._worker is not None and self._worker.is_running

    def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name="herald-intake-worker")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is None:
            return
        if self._worker is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._worker.shutdown(), STOP_TIMEOUT_S)
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    async def _serve(self) -> None:
        pause = RETRY_FIRST_S
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            began = loop.time()
            try:
                client = await self.gateway.client()
                if not self._attributes_checked:
                    # As the worker does: an API started first must not have its starts refused.
                    await ensure_search_attributes(client)
                    self._attributes_checked = True
                self._worker = intake_worker(client)
                log.info("intake worker polling %s", INTAKE_TASK_QUEUE)
                await self._worker.run()  # until stop() shuts it down, or it fails
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Temporal unreachable, or the worker failed: again later
                if self._stopping.is_set():
                    return
                log.warning("intake worker not polling %s (%s); trying again in %g s", INTAKE_TASK_QUEUE, exc, pause)
            self._worker = None
            if loop.time() - began > RETRY_MAX_S:
                pause = RETRY_FIRST_S  # it ran a while: a new failure, not the same one again
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            pause = min(pause * 2, RETRY_MAX_S)
