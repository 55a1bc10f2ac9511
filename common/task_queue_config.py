"""The tenants' fairness weights and send cap, set on Herald's task queues in Temporal (docs/tenants.md).

Every job's tasks carry its tenant as their fairness key (common/jobs.py, job_priority). What a key
gets is task-queue configuration, which the Temporal server keeps and applies across all workers:

- `HERALD_TENANT_WEIGHTS`: each listed tenant's weight, as a *fairness weight override* on every job
  queue, for its workflow tasks and its activity tasks alike. An override wins over a weight a task
  carries, and applies to what is already queued, to every schedule's later runs and to a job's
  retries: a changed weight takes effect as soon as a worker has started with it, with no job started
  again. A tenant the setting no longer names loses its override (weight 1 again).
- `HERALD_TENANT_RATE_LIMIT`: the *fairness key rate limit default* of every job queue's activity
  tasks: each key (tenant) is dispatched at most that many tasks per second, scaled by its weight,
  across all workers, while the other keys' tasks go on being dispatched. A worker with a cap sends
  every send through the queue as one task (activities/rate_limit.py). Unset: no per-key limit.

Each worker sets both at start (worker.py), as it sets the channel's queue rate limit with every poll:
give every worker the same values. A server without the task-queue config API (before 1.30) refuses;
then a worker that has weights or a cap to set refuses to start, saying why, and one that has none
carries on.
"""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import RateLimit, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, UpdateTaskQueueConfigRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from common.models import TASK_QUEUES
from common.settings import Settings, StartupRefused

log = logging.getLogger("herald.task_queues")
REASON = "Herald worker settings (HERALD_TENANT_WEIGHTS, HERALD_TENANT_RATE_LIMIT)"
QUEUE_TYPES = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
# Where the server lacks the config API or fairness (an older server): what it answers.
UNSUPPORTED = (RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.FAILED_PRECONDITION)


class TaskQueueConfigRefused(StartupRefused):
    """The server would not take the tenants' weights or cap: the worker must not run without them."""


def job_queues() -> list[str]:
    """The task queues jobs run on (each once: reports share the maintenance queue)."""
    return list(dict.fromkeys(TASK_QUEUES.values()))


async def current_overrides(client: Client, queue: str, queue_type: TaskQueueType.ValueType) -> dict[str, float]:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=queue_type, report_config=True
        )
    )
    return dict(response.config.fairness_weight_overrides)


def config_request(
    client: Client, settings: Settings, queue: str, queue_type: TaskQueueType.ValueType, current: dict[str, float]
) -> UpdateTaskQueueConfigRequest:
    """The update that makes one queue's config what the settings say."""
    request = UpdateTaskQueueConfigRequest(
        namespace=client.namespace,
        identity=client.identity,
        task_queue=queue,
        task_queue_type=queue_type,
        set_fairness_weight_overrides=settings.tenant_weights,
        unset_fairness_weight_overrides=sorted(set(current) - set(settings.tenant_weights)),
    )
    # The server takes no rate limit for a workflow task queue; and only sends are capped.
    if queue_type == TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY:
        cap = settings.tenant_rate_limit
        update = request.update_fairness_key_rate_limit_default
        update.reason = REASON
        if cap is not None:
            update.rate_limit.CopyFrom(RateLimit(requests_per_second=cap))
    return request


async def configure_job_queues(client: Client, settings: Settings) -> None:
    """Set HERALD_TENANT_WEIGHTS and HERALD_TENANT_RATE_LIMIT on every job queue (see the module's doc)."""
    wanted = bool(settings.tenant_weights) or settings.tenant_rate_limit is not None
    for queue in job_queues():
        for queue_type in QUEUE_TYPES:
            try:
                current = await current_overrides(client, queue, queue_type)
                if not wanted and not current and queue_type == TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW:
                    continue  # nothing to set, nothing to unset (no rate limit on a workflow queue)
                await client.workflow_service.update_task_queue_config(
                    config_request(client, settings, queue, queue_type, current)
                )
            except RPCError as exc:
                if exc.status not in UNSUPPORTED:
                    raise
                if wanted:
                    raise TaskQueueConfigRefused(
                        f"the Temporal server refused the task-queue config of {queue} ({exc.message}): "
                        "HERALD_TENANT_WEIGHTS and HERALD_TENANT_RATE_LIMIT need a server with task-queue "
                        "fairness config (Temporal Server 1.30 or later, matching.enableFairness=true; "
                        "docs/tenants.md)"
                    ) from exc
                log.info("task-queue config not available on this server (%s); no weights or cap to set", exc.message)
                return
    log.info(
        "task queues configured: tenant weights %s, tenant rate limit %s/s",
        settings.tenant_weights or "none",
        settings.tenant_rate_limit if settings.tenant_rate_limit is not None else "none",
    )
