"""The job's tenant, from its run to its activities, as a Temporal header: the `tenant` label of
`herald_attempts_total` (common/metrics.py).

The workflow side adds the header `herald-tenant` (the run's HeraldTenant search attribute, set by the
API at start) to every activity and local activity the run schedules; the activity side reads it into
a context variable (common/metrics.activity_tenant) that count_attempt reads. No activity's input
changes, and no call site passes the tenant along. A run without a tenant (from before tenants) sends
no header: its attempts count as `other`, as its other metrics do. Headers are not part of what replay
compares (the commands' types and ids), so runs recorded before this header replay unchanged
(tests/replay).
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.converter import default as default_converter
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from common.metrics import activity_tenant
from common.tenants import TENANT_KEY

TENANT_HEADER = "herald-tenant"


class TenantHeaderInterceptor(Interceptor):
    """On every worker: the workflow side adds the header, the activity side reads it."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TenantInbound(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _TenantWorkflowInbound


class _TenantInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        payload = input.headers.get(TENANT_HEADER)
        tenant = default_converter().payload_converter.from_payload(payload, str) if payload else None
        token = activity_tenant.set(tenant)
        try:
            return await super().execute_activity(input)
        finally:
            activity_tenant.reset(token)


class _TenantWorkflowInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_TenantOutbound(outbound))


class _TenantOutbound(WorkflowOutboundInterceptor):
    def _with_tenant(self, headers: Any) -> Any:
        tenant = workflow.info().typed_search_attributes.get(TENANT_KEY)
        if tenant is None:
            return headers
        return {**headers, TENANT_HEADER: default_converter().payload_converter.to_payload(tenant)}

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = self._with_tenant(input.headers)
        return super().start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = self._with_tenant(input.headers)
        return super().start_local_activity(input)
