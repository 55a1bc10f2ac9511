"""Record IdempotencyKeyWorkflow histories for tests/replay/test_replay.py.

    python -m tests.replay.record_idempotency tests/replay/histories/idempotency-v1

Update-with-start needs the dev server (the time-skipping test server lacks it), so these are
recorded apart from record.py's job histories, through the API's own KeyStore:
- `key_answered_open`: a claim, a second identical claim waiting for the first one's answer
  (then replayed), a conflicting claim, a late release by a request that no longer holds the
  key; the run still open on its keep-timer;
- `key_taken_over_and_expired`: a holder whose lease runs out, taken over by a retry that frees
  the key again (a 5xx), a new claim answered, and the key's end after its (short) keep time.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from api.core.idempotency import KeyStore
from common.idempotency import Claim, Completion, StoredAnswer, key_workflow_id
from common.runtime import exit_skipping_teardown
from common.temporal import client_for
from tests.api.helpers import dev_server
from tests.replay.recording import save_workflow
from tests.support.temporal import local_settings, running_workers

ANSWER = StoredAnswer(status=202, headers=[["content-type", "application/json"]], body='{"jobId":"email-1"}')


class _Gateway:
    def __init__(self, client) -> None:
        self._client = client

    async def client(self):
        return self._client


async def record(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as tmp:
            settings = local_settings(Path(tmp), idempotency_keep_hours=2 / 3600)
            client = client_for(env.client, settings)
            async with running_workers(env.client, settings):
                # 1. answered, replayed to a waiter, a conflict, a stale release; still open.
                kept = settings.model_copy(update={"idempotency_keep_hours": 24})
                first = KeyStore(_Gateway(client), kept, key_workflow_id("record", "answered"))
                assert (await first.claim(Claim("F", "a", 30))).outcome == "proceed"
                waiting = asyncio.create_task(first.claim(Claim("F", "b", 30)))
                await asyncio.sleep(0.5)
                await first.complete(Completion("a", ANSWER))
                assert (await waiting).outcome == "replay"
                assert (await first.claim(Claim("G", "c", 30))).outcome == "conflict"
                await first.complete(Completion("b"))
                await asyncio.sleep(0.5)
                await save_workflow(client, first.workflow_id, out_dir, "key_answered_open")

                # 2. a lease that runs out, a release, an answer, the end of the keep time.
                second = KeyStore(_Gateway(client), settings, key_workflow_id("record", "expired"))
                assert (await second.claim(Claim("F", "a", 0.5))).outcome == "proceed"
                assert (await second.claim(Claim("F", "b", 30))).outcome == "proceed"
                await second.complete(Completion("b"))
                assert (await second.claim(Claim("H", "c", 30))).outcome == "proceed"
                await second.complete(Completion("c", ANSWER))
                await client.get_workflow_handle(second.workflow_id).result()
                await save_workflow(client, second.workflow_id, out_dir, "key_taken_over_and_expired")


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/replay/histories/idempotency-v1")))
    exit_skipping_teardown(0)
