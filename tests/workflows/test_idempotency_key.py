"""IdempotencyKeyWorkflow (workflows/idempotency.py) in the time-skipping environment: a continued
run keeps its key's state from its very first task, so a claim that arrives with the start is
answered from it (replay, conflict), never told to proceed (a second job)."""

from __future__ import annotations

import asyncio
import uuid

from common.idempotency import Claim, KeyStart, KeyState, StoredAnswer
from common.models import TASK_QUEUES
from tests.support.temporal import herald_client, running_workers
from workflows.idempotency import IdempotencyKeyWorkflow

FIRST = StoredAnswer(status=202, body='{"jobId": "email-1"}')


async def _continued_run(client):
    """A run as continue-as-new starts it: the first request's answer is carried in its input."""
    state = KeyState(fingerprint="POST /jobs/email A", answer=FIRST)
    return await client.start_workflow(
        IdempotencyKeyWorkflow.run,
        KeyStart(keep_s=86_400, state=state),
        id=f"idem-{uuid.uuid4().hex}",
        task_queue=TASK_QUEUES["cleanup"],
    )


async def test_a_continued_run_answers_its_first_claims_from_the_carried_state(time_env, make_settings):
    client = herald_client(time_env)
    same, other = await _continued_run(client), await _continued_run(client)
    # The claims wait at the server before any worker runs: they come in the run's first task,
    # together with its start.
    replay = asyncio.create_task(
        same.execute_update(
            IdempotencyKeyWorkflow.claim, Claim(fingerprint="POST /jobs/email A", request_id="r2", lease_s=30)
        )
    )
    conflict = asyncio.create_task(
        other.execute_update(
            IdempotencyKeyWorkflow.claim, Claim(fingerprint="POST /jobs/email B", request_id="r3", lease_s=30)
        )
    )
    await asyncio.sleep(0.5)
    async with running_workers(client, make_settings()):
        replayed, conflicted = await replay, await conflict
    assert replayed.outcome == "replay" and replayed.answer == FIRST
    assert conflicted.outcome == "conflict"
