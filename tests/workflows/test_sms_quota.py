"""SmsQuotaWorkflow on the time-skipping server: the rolling hour, by the workflow's clock.

The time-skipping server has no update-with-start, which api/jobs/throttle.py uses: here the quota
workflow is started and updated in two calls; the rest (reserve, release, the window, ending
itself once idle for an hour) is the same code. tests/api/test_throttle.py covers the API end to
end on the dev server.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio.client import WorkflowHandle

from common.models import ENTITY_TASK_QUEUE, QuotaAnswer, QuotaInput, QuotaRequest
from common.temporal import client_for
from tests.support.temporal import query_settled, running_workers
from workflows.sms_quota import SmsQuotaWorkflow

LIMIT = 10


async def _reserve(handle: WorkflowHandle, count: int = 1, limit: int = LIMIT) -> QuotaAnswer:
    return await handle.execute_update(
        SmsQuotaWorkflow.reserve, QuotaRequest(count=count, limit=limit, token=uuid.uuid4().hex)
    )


async def _start(client, key: str) -> WorkflowHandle:
    return await client.start_workflow(SmsQuotaWorkflow.run, QuotaInput(key=key), id=key, task_queue=ENTITY_TASK_QUEUE)


async def test_the_11th_in_an_hour_is_refused_until_the_first_slot_frees(time_env, make_settings):
    settings = make_settings()
    client = client_for(time_env.client, settings)
    async with running_workers(time_env.client, settings):
        handle = await _start(client, f"sms-quota-test-{uuid.uuid4().hex[:8]}")
        # 5 now, 5 half an hour later: the hour is full.
        for _ in range(5):
            assert (await _reserve(handle)).granted
        await time_env.sleep(timedelta(minutes=30))
        for _ in range(5):
            assert (await _reserve(handle)).granted
        refused = await _reserve(handle)
        assert not refused.granted and refused.used == LIMIT
        # The first five expire an hour after they were taken: 30 minutes from now.
        assert 1790 <= refused.retry_after_s <= 1800, refused
        # Asking again does not take a slot either.
        assert not (await _reserve(handle)).granted
        assert await query_settled(handle, SmsQuotaWorkflow.used) == LIMIT

        await time_env.sleep(timedelta(minutes=30, seconds=1))
        assert (await _reserve(handle)).granted  # the first five have expired
        assert await query_settled(handle, SmsQuotaWorkflow.used) == 6
        # Two at once need two free slots; five are free, six would not be.
        assert (await _reserve(handle, count=4)).granted
        six = await _reserve(handle, count=2)
        assert not six.granted and 1790 <= six.retry_after_s <= 1800, six  # until the second five expire


async def test_a_release_gives_the_slots_back_and_an_idle_hour_ends_the_workflow(time_env, make_settings):
    settings = make_settings()
    client = client_for(time_env.client, settings)
    async with running_workers(time_env.client, settings):
        handle = await _start(client, f"sms-quota-test-{uuid.uuid4().hex[:8]}")
        token = uuid.uuid4().hex
        taken = await handle.execute_update(SmsQuotaWorkflow.reserve, QuotaRequest(count=3, limit=3, token=token))
        assert taken.granted and taken.used == 3
        assert not (await _reserve(handle, limit=3)).granted
        assert await handle.execute_update(SmsQuotaWorkflow.release, token) == 3
        assert (await _reserve(handle, limit=3)).granted
        # More than the limit at once can never fit: refused, "a whole window" from now.
        never = await _reserve(handle, count=4, limit=3)
        assert not never.granted and never.retry_after_s == 3600
        # Nothing for an hour: the slots have expired and the workflow has ended (the next SMS starts it again).
        await time_env.sleep(timedelta(hours=1, seconds=5))
        await handle.result()
        again = await _start(client, handle.id)
        assert (await _reserve(again, limit=3)).granted
