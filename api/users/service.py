"""A user's Temporal calls: its entity workflow (workflows/user.py, id `user-<digest of the userId>`).

PUT is an update-with-start of its `put` update (the first PUT starts it), GET its `profile` query. Its
digests are workflows of their own (workflows/digest.py, id `digest-<digest of the userId and topic>`):
their `digest` query lists them, their `send_now` signal sends one now.
"""

from __future__ import annotations

import asyncio

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from common.jobs import tenant_attributes, tenant_memo
from common.models import (
    ENTITY_TASK_QUEUE,
    DigestInfo,
    UserInput,
    UserProfile,
    digest_workflow_id,
    digest_workflow_of,
    user_workflow_id,
)
from common.temporal import RPC_TIMEOUT
from common.tenants import Tenant
from workflows.digest import DigestWorkflow
from workflows.user import UserWorkflow


async def store_profile(client: Client, profile: UserProfile, tenant: Tenant) -> UserProfile:
    """Create or replace the user's contact data (the tenant's user of that id); the profile as stored."""
    start = WithStartWorkflowOperation(
        UserWorkflow.run,
        UserInput(user_id=profile.user_id),
        id=user_workflow_id(profile.user_id, tenant.scope),
        memo=tenant_memo(tenant.name),
        search_attributes=TypedSearchAttributes(tenant_attributes(tenant.name)),
        task_queue=ENTITY_TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="a user's contact data",
    )
    return await client.execute_update_with_start_workflow(
        UserWorkflow.put, profile, start_workflow_operation=start, rpc_timeout=RPC_TIMEOUT
    )


async def read_profile(client: Client, user_id: str, tenant: Tenant) -> UserProfile | None:
    """The user's contact data; None for a user the tenant never PUT (its id is in the tenant's scope:
    another tenant's user of the same userId is another workflow)."""
    try:
        return await client.get_workflow_handle(user_workflow_id(user_id, tenant.scope)).query(
            UserWorkflow.get_profile, rpc_timeout=RPC_TIMEOUT
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def open_digests(client: Client, profile: UserProfile, tenant: Tenant) -> list[DigestInfo]:
    """The user's open digests: one per digested topic whose digest holds items (workflows/digest.py)."""
    topics = profile.digest.topics if profile.digest else []
    found = await asyncio.gather(*(_open_digest(client, profile.user_id, topic, tenant) for topic in topics))
    return [digest for digest in found if digest is not None]


async def _open_digest(client: Client, user_id: str, topic: str, tenant: Tenant) -> DigestInfo | None:
    try:
        return await client.get_workflow_handle(digest_workflow_id(user_id, topic, tenant.scope)).query(
            DigestWorkflow.open_digest, rpc_timeout=RPC_TIMEOUT
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None  # no item ever joined a digest of that topic
        raise


async def send_digest_now(client: Client, digest_id: str) -> None:
    """Send the open digest `digest_id` now (its workflow's `send_now` signal)."""
    await client.get_workflow_handle(digest_workflow_of(digest_id)).signal(
        DigestWorkflow.send, digest_id, rpc_timeout=RPC_TIMEOUT
    )
