"""The dead-letter queue: every job whose run ended failed, listed, redriven and discarded.

There is no second store: a dead letter is the failed run itself, kept by Temporal for the
namespace's retention period. A failed job sets its `HeraldStatus` search attribute to `failed`
and writes its final state (reason, attempts) into its memo, so one visibility query lists a
page of dead letters with everything the list shows, however many there are. A run that was
terminated or timed out (it never recorded its own end) is a dead letter too.

A dead letter is the *latest* run of its job id: redriving starts the same job id again from
the start with the same input, which leaves the failed run behind as history; discarding starts
a tombstone run in its place (never executed: started on a queue no worker polls and terminated
at once, with the failed job's final state and `discarded` in its memo, and no job type, so
visibility never lists it as a job). Neither deletes anything, so a job's history stays readable
for the retention period. (Temporal's DeleteWorkflowExecution would be the obvious discard, but
the dev server does not remove a deleted run from visibility, so it would stay listed.)
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest, ListWorkflowExecutionsRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api.core.errors import ApiError, validation_error
from api.core.temporal import is_unreachable
from api.core.visibility import iso, job_type, memo_state, newer, run_tenant, runs_of, search_attribute, tenant_clause
from api.jobs.starter import start_job
from common.jobs import WORKFLOW_NAMES, redrive_input, tenant_attributes, tenant_memo
from common.logs import log_event
from common.models import (
    JOB_STATUS_KEY,
    JOB_TYPE_KEY,
    STATE_MEMO_KEY,
    CleanupInput,
    JobKind,
    NotificationInput,
    Phase,
    ReportInput,
)
from common.temporal import RPC_TIMEOUT
from common.tenants import TENANT_KEY
from common.vocabulary import FAILED_BY_ENDING, FAILED_BY_ENDING_NAMES

# The visibility condition a dead letter's run meets (the stats count with it too).
DEAD = "({})".format(
    " OR ".join(
        [
            f"{JOB_STATUS_KEY.name} = '{Phase.FAILED.value}'",
            *(f"ExecutionStatus = '{name}'" for name in FAILED_BY_ENDING_NAMES),
        ]
    )
)
_ENDED_BADLY = {WorkflowExecutionStatus.FAILED, *FAILED_BY_ENDING}
# A discarded dead letter's tombstone: a workflow type no worker knows, on a queue no worker polls.
DISCARDED_WORKFLOW = "DiscardedDeadLetter"
DISCARDED_QUEUE = "herald-discarded"
# What each job workflow takes as input, to start it again from its first event.
_INPUTS = {name: input_type for input_type, name in WORKFLOW_NAMES.items()}


@dataclass
class DeadLetter:
    job_id: str
    type: str
    error: str | None
    attempts: int
    failed_at: str | None
    tenant: str | None = None


@dataclass
class DeadLetterPage:
    items: list[DeadLetter]
    next_cursor: str | None


class DeadLetterQueue:
    def __init__(self, client: Client, default_tenant: str) -> None:
        # The default tenant owns the dead letters recorded without a tenant (common/tenants.py).
        self.client, self.default_tenant = client, default_tenant

    # ---- reading -----------------------------------------------------------------------
    async def page(
        self, kind: JobKind | None = None, limit: int = 50, cursor: str | None = None, tenant: str | None = None
    ) -> DeadLetterPage:
        """Newest first (visibility's order: latest start first), at most `limit` at a time; of `tenant`
        only, or every tenant's."""
        query = f"{JOB_TYPE_KEY.name} = '{kind}' AND {DEAD}" if kind else f"{JOB_TYPE_KEY.name} IS NOT NULL AND {DEAD}"
        query += tenant_clause(tenant, self.default_tenant)
        try:
            answer = await self.client.workflow_service.list_workflow_executions(
                ListWorkflowExecutionsRequest(
                    namespace=self.client.namespace, query=query, page_size=limit, next_page_token=_token(cursor)
                ),
                timeout=RPC_TIMEOUT,
            )
        except RPCError as err:
            # Some visibility stores (the dev server's SQLite) fail a token they cannot decode as an
            # internal error, not INVALID_ARGUMENT: the same query from the first page tells which.
            if (
                cursor
                and not is_unreachable(err)
                and (err.status == RPCStatusCode.INVALID_ARGUMENT or await self._lists_from_the_start(query))
            ):
                raise validation_error("cursor", "not a cursor this API gave out") from err
            raise
        latest = await self._latest_runs({info.execution.workflow_id for info in answer.executions})
        items = [
            await self._entry(info)
            for info in answer.executions
            if latest.get(info.execution.workflow_id) == info.execution.run_id
        ]
        token = answer.next_page_token
        return DeadLetterPage(items=items, next_cursor=base64.urlsafe_b64encode(token).decode() if token else None)

    async def _lists_from_the_start(self, query: str) -> bool:
        try:
            await self.client.workflow_service.list_workflow_executions(
                ListWorkflowExecutionsRequest(namespace=self.client.namespace, query=query, page_size=1),
                timeout=RPC_TIMEOUT,
            )
        except RPCError:
            return False
        return True

    async def _latest_runs(self, job_ids: set[str]) -> dict[str, str]:
        """The run id of each job's latest run: a redriven or discarded job's failed run is not it."""
        latest: dict[str, WorkflowExecutionInfo] = {}
        for info in await runs_of(self.client, job_ids):
            if newer(info, latest.get(info.execution.workflow_id)):
                latest[info.execution.workflow_id] = info
        return {job_id: info.execution.run_id for job_id, info in latest.items()}

    async def _entry(self, info: WorkflowExecutionInfo) -> DeadLetter:
        state = await memo_state(self.client, info)
        kind = job_type(self.client, info) or state.get("kind", "")
        status = WorkflowExecutionStatus(info.status)
        if status in FAILED_BY_ENDING and state.get("phase") != Phase.FAILED.value:
            error = FAILED_BY_ENDING[status]
        else:
            error = state.get("error")
        failed_at = iso(info.close_time) if info.HasField("close_time") else state.get("updated_at")
        return DeadLetter(
            job_id=info.execution.workflow_id,
            type=kind,
            error=error,
            attempts=int(state.get("attempts") or 0),
            failed_at=failed_at,
            tenant=run_tenant(self.client, info, self.default_tenant),
        )

    async def find(self, job_id: str) -> WorkflowExecutionInfo:
        """The job's latest run, if it is a dead letter; else 404."""
        try:
            description = await self.client.get_workflow_handle(job_id).describe(rpc_timeout=RPC_TIMEOUT)
        except Exception as exc:  # an RPC "not found" and a malformed id alike
            raise _not_dead(job_id) from exc
        info = description.raw_description.workflow_execution_info
        state = (await description.memo()).get(STATE_MEMO_KEY)
        if not isinstance(state, dict) or state.get("discarded"):
            raise _not_dead(job_id)
        if description.status == WorkflowExecutionStatus.RUNNING and state.get("phase") == Phase.FAILED.value:
            raise ApiError(
                409,
                "callback_pending",
                "the job failed and its result callback is still being "
                "delivered; redrive or discard it once that is done",
            )
        if description.status not in _ENDED_BADLY:
            raise _not_dead(job_id)
        return info

    # ---- acting ------------------------------------------------------------------------
    async def redrive(self, job_id: str) -> str:
        """Run the same job id again from the start; the dead letter leaves the queue."""
        info = await self.find(job_id)
        request = redrive_input(await self._first_input(info), job_id)
        spec = request.job
        started = await start_job(
            self.client, request, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
        )
        log_event(
            "redriven",
            job_id=job_id,
            kind=spec.kind,
            failed_run=info.execution.run_id,
            run=started.handle.result_run_id,
        )
        return job_id

    async def discard(self, job_id: str) -> None:
        info = await self.find(job_id)
        state = await memo_state(self.client, info)
        # The tombstone keeps the job's tenant, so a tenant's counts subtract its own (api/admin/service.py).
        tenant = search_attribute(self.client, info, TENANT_KEY.name)
        handle = await self.client.start_workflow(
            DISCARDED_WORKFLOW,
            id=job_id,
            task_queue=DISCARDED_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            memo={STATE_MEMO_KEY: state | {"phase": Phase.FAILED.value, "discarded": True}} | tenant_memo(tenant),
            search_attributes=TypedSearchAttributes(tenant_attributes(tenant)),
            rpc_timeout=RPC_TIMEOUT,
        )
        await handle.terminate(reason="dead letter discarded by an operator", rpc_timeout=RPC_TIMEOUT)
        log_event("discarded", job_id=job_id, failed_run=info.execution.run_id)

    async def redrive_all(self, kind: JobKind | None = None, tenant: str | None = None) -> int:
        redriven, cursor = 0, None
        # Collect first: redriving deletes entries and so moves the pages under a live cursor.
        job_ids: list[str] = []
        while True:
            page = await self.page(kind, limit=500, cursor=cursor, tenant=tenant)
            job_ids += [item.job_id for item in page.items]
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        for job_id in dict.fromkeys(job_ids):
            try:
                await self.redrive(job_id)
            except ApiError as err:
                if err.status != 404:  # gone meanwhile (redriven or discarded by someone else): skip
                    raise
                continue
            redriven += 1
        return redriven

    async def _first_input(self, info: WorkflowExecutionInfo) -> NotificationInput | CleanupInput | ReportInput:
        input_type = _INPUTS.get(info.type.name)
        if input_type is None:
            raise _not_dead(info.execution.workflow_id)
        history = await self.client.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(
                namespace=self.client.namespace, execution=info.execution, maximum_page_size=1
            ),
            timeout=RPC_TIMEOUT,
        )
        first = history.history.events[0]
        assert first.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
        payloads = first.workflow_execution_started_event_attributes.input.payloads
        if len(payloads) != 1:
            raise ApiError(409, "not_redrivable", "the failed run has no job input to start again")
        [request] = await self.client.data_converter.decode(payloads, [input_type])
        return request


def _not_dead(job_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no dead letter with job id {job_id!r}")


def _token(cursor: str | None) -> bytes:
    if not cursor:
        return b""
    try:
        return base64.b64decode(cursor.encode(), altchars=b"-_", validate=True)
    except (ValueError, binascii.Error) as exc:
        raise validation_error("cursor", "not a cursor this API gave out") from exc
