"""Reading jobs from Temporal's visibility store: the pieces the DLQ and the stats share."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
from temporalio.client import Client

from common.models import JOB_TYPE_KEY, STATE_MEMO_KEY
from common.temporal import RPC_TIMEOUT
from common.tenants import TENANT_KEY

# Job ids per `WorkflowId IN (...)` query when looking for a job's other runs.
IDS_PER_QUERY = 500
PAGE = 1000


async def list_runs(client: Client, query: str, limit: int | None = None) -> tuple[list[WorkflowExecutionInfo], bool]:
    """The runs `query` finds, at most `limit`; and whether that is all of them."""
    found: list[WorkflowExecutionInfo] = []
    token = b""
    while True:
        page_size = min(PAGE, limit - len(found)) if limit else PAGE
        answer = await client.workflow_service.list_workflow_executions(
            ListWorkflowExecutionsRequest(
                namespace=client.namespace, query=query, page_size=page_size, next_page_token=token
            ),
            timeout=RPC_TIMEOUT,
        )
        found += answer.executions
        token = answer.next_page_token
        if not token:
            return found, True
        if limit and len(found) >= limit:
            return found[:limit], False


async def runs_of(client: Client, job_ids: set[str] | list[str]) -> list[WorkflowExecutionInfo]:
    """Every run of these job ids (a redriven or discarded job has more than one)."""
    ids = sorted(set(job_ids))
    runs: list[WorkflowExecutionInfo] = []
    for chunk in (ids[n : n + IDS_PER_QUERY] for n in range(0, len(ids), IDS_PER_QUERY)):
        runs += (await list_runs(client, "WorkflowId IN ({})".format(", ".join(quoted(i) for i in chunk))))[0]
    return runs


def newer(info: WorkflowExecutionInfo, than: WorkflowExecutionInfo | None) -> bool:
    if than is None:
        return True
    return (info.start_time.seconds, info.start_time.nanos) > (than.start_time.seconds, than.start_time.nanos)


def quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def search_attribute(client: Client, info: WorkflowExecutionInfo, name: str) -> str | None:
    payload = info.search_attributes.indexed_fields.get(name)
    if payload is None:
        return None
    [value] = client.data_converter.payload_converter.from_payloads([payload])
    value = value[0] if isinstance(value, list) and value else value
    return value if isinstance(value, str) else None


def tenant_clause(tenant: str | None, default_tenant: str) -> str:
    """What restricts a visibility query to `tenant`'s runs (`` AND …``; empty: every tenant's). The
    default tenant's include the runs recorded without a tenant (before tenants: common/tenants.py)."""
    if tenant is None:
        return ""
    mine = f"{TENANT_KEY.name} = {quoted(tenant)}"
    return f" AND ({mine} OR {TENANT_KEY.name} IS NULL)" if tenant == default_tenant else f" AND {mine}"


def run_tenant(client: Client, info: WorkflowExecutionInfo, default_tenant: str) -> str:
    """Whose run it is: its HeraldTenant, or the default tenant's for a run from before tenants."""
    return search_attribute(client, info, TENANT_KEY.name) or default_tenant


def job_type(client: Client, info: WorkflowExecutionInfo) -> str | None:
    return search_attribute(client, info, JOB_TYPE_KEY.name)


async def memo_state(client: Client, info: WorkflowExecutionInfo) -> dict[str, Any]:
    """The job state a run's memo holds (api/jobs/starter.py, workflows/job_tracking.py), or {}."""
    payload = info.memo.fields.get(STATE_MEMO_KEY)
    if payload is None:
        return {}
    try:
        [state] = await client.data_converter.decode([payload])
    except Exception:  # noqa: BLE001 - an unreadable memo leaves the visibility fields
        return {}
    return state if isinstance(state, dict) else {}


def iso(timestamp: Any) -> str:
    return timestamp.ToDatetime(UTC).isoformat()
