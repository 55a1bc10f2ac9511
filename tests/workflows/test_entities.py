"""The entity workflows keep their state across continue-as-new (their history stays bounded)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from temporalio.client import Client, WorkflowHandle

from common.models import ENTITY_TASK_QUEUE, QuotaInput, QuotaRequest, UserInput, UserProfile
from common.settings import Settings
from common.temporal import client_for
from tests.support.temporal import query_settled, running_workers
from workflows import sms_quota, user
from workflows.sms_quota import SmsQuotaWorkflow
from workflows.user import UserWorkflow


@contextlib.asynccontextmanager
async def entity(
    time_env, settings: Settings, run: Any, arg: Any, workflow_id: str
) -> AsyncIterator[tuple[Client, WorkflowHandle]]:
    """An entity workflow started on the entity task queue, with Herald's workers running: Herald's
    client and the run's handle."""
    client = client_for(time_env.client, settings)
    async with running_workers(time_env.client, settings):
        yield client, await client.start_workflow(run, arg, id=workflow_id, task_queue=ENTITY_TASK_QUEUE)


async def test_a_user_continues_as_new_with_its_profile(time_env, make_settings, monkeypatch):
    monkeypatch.setattr(user, "MAX_UPDATES", 2)
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    started = entity(time_env, make_settings(), UserWorkflow.run, UserInput(user_id=user_id), f"user-{user_id}")
    async with started as (client, handle):
        first = await handle.execute_update(UserWorkflow.put, UserProfile(user_id=user_id, email="a@example.com"))
        await handle.execute_update(UserWorkflow.put, UserProfile(user_id=user_id, email="b@example.com"))
        # The second update ended the run: a new one holds the profile, with the first creation time.
        latest = client.get_workflow_handle(handle.id)
        profile = await query_settled(latest, UserWorkflow.get_profile)
        assert profile.email == "b@example.com" and profile.created_at == first.created_at
        assert (await latest.describe()).run_id != handle.result_run_id
        third = await latest.execute_update(UserWorkflow.put, UserProfile(user_id=user_id, phone="+14155550100"))
        assert third.email is None and third.phone == "+14155550100" and third.created_at == first.created_at


async def test_a_quota_continues_as_new_with_its_slots(time_env, make_settings, monkeypatch):
    monkeypatch.setattr(sms_quota, "MAX_UPDATES", 3)
    key = f"sms-quota-test-{uuid.uuid4().hex[:8]}"
    async with entity(time_env, make_settings(), SmsQuotaWorkflow.run, QuotaInput(key=key), key) as (client, handle):
        for _ in range(3):
            assert (
                await handle.execute_update(
                    SmsQuotaWorkflow.reserve, QuotaRequest(count=1, limit=4, token=uuid.uuid4().hex)
                )
            ).granted
        latest = client.get_workflow_handle(key)
        assert (await latest.describe()).run_id != handle.result_run_id
        assert await query_settled(latest, SmsQuotaWorkflow.used) == 3  # carried over
        assert (
            await latest.execute_update(SmsQuotaWorkflow.reserve, QuotaRequest(count=1, limit=4, token="x"))
        ).granted
        refused = await latest.execute_update(SmsQuotaWorkflow.reserve, QuotaRequest(count=1, limit=4, token="y"))
        assert not refused.granted and refused.used == 4
