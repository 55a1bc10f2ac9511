"""An SMS quota (workflows/sms_quota.py) as its callers reach it: the key of a number's or a user's
quota, and the two updates, by name (common/ imports no workflow). The API reserves at intake
(api/jobs/throttle.py); a job the API did not count (a schedule's run, a redrive) reserves when it is
about to send (activities/sms_quota.py). Both by update-with-start: the first SMS to a number starts
its quota's run, on INTAKE_TASK_QUEUE, served by the API processes.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from common.models import INTAKE_TASK_QUEUE, QuotaAnswer, QuotaInput, QuotaRequest
from common.names import SMS_QUOTA_WORKFLOW
from common.temporal import RPC_TIMEOUT
from common.tenants import scoped

# The rolling window HERALD_SMS_PER_HOUR counts in.
WINDOW = timedelta(hours=1)
RESERVE_UPDATE = "reserve"
RELEASE_UPDATE = "release"


def quota_key(kind: str, value: str, scope: str = "") -> str:
    """The quota workflow's id for a number (`phone`) or a user (`user`): a digest, not the value; in the
    tenant's scope (common/tenants.py), so each tenant's SMS count apart."""
    return "sms-quota-" + hashlib.sha256(scoped(scope, f"{kind}\x00{value}").encode()).hexdigest()[:32]


async def reserve_on(client: Client, key: str, request: QuotaRequest) -> QuotaAnswer:
    """One `reserve` update on the quota `key`, starting its run if it has none."""
    # A fresh start operation each call: one carries the handle of the single call it was given to.
    start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
        SMS_QUOTA_WORKFLOW,
        QuotaInput(key=key),
        id=key,
        task_queue=INTAKE_TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="SMS quota (rolling hour)",
    )
    # The same update id on a retry: a reservation the workflow already took is not taken twice.
    answer: QuotaAnswer = await client.execute_update_with_start_workflow(
        RESERVE_UPDATE,
        request,
        start_workflow_operation=start,
        id=f"reserve-{request.token}",
        rpc_timeout=RPC_TIMEOUT,
        result_type=QuotaAnswer,
    )
    return answer


async def release_on(client: Client, key: str, token: str) -> int:
    """Take the reservation `token` back from the quota `key`; answers how many slots it freed."""
    released: int = await client.get_workflow_handle(key).execute_update(
        RELEASE_UPDATE, token, id=f"release-{token}", rpc_timeout=RPC_TIMEOUT, result_type=int
    )
    return released
