"""Record the histories of digests (`DigestWorkflow`, the `digests` branch of the job's preferences) for
tests/replay/test_replay.py.

    python -m tests.replay.record_digests tests/replay/histories/digest-v1

On the dev server (PUT /users is an update-with-start), through the API, for a user who digests the
topic `orders` every 60 seconds:
- `digested_item_sent`: an email that joined the digest, waited in it and completed with its digestId;
- `digested_item_cancelled`: one cancelled (POST /jobs/{id}/cancel) out of the digest;
- `digest_sent_open`: the digest's workflow: two joins, a leave, the digest's email, the items told
  (still open: it waits for the next join).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from common.models import digest_workflow_of
from common.runtime import exit_skipping_teardown
from devstack.smtp_sink import SmtpSink
from tests.api.helpers import address_of, dev_server
from tests.replay.record_prefs import status
from tests.replay.recording import KEY, save_workflow, through_the_api
from tests.support.temporal import free_port, local_settings


def email(subject: str) -> dict[str, str]:
    return {"to": "ada@example.com", "subject": subject, "body": "Hello", "userId": "digest-fan", "topic": "orders"}


async def in_digest(api, job_id: str) -> str:
    for _ in range(400):
        body = (await api.get(f"/jobs/{job_id}/status")).json()
        if body.get("digestId"):
            return str(body["digestId"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} never joined a digest")


async def record(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as tmp, SmtpSink(Path(tmp) / "outbox", port=free_port()) as sink:
            settings = local_settings(Path(tmp), temporal_address=address_of(env), api_keys=[KEY], smtp_port=sink.port)
            async with through_the_api(env, settings) as (client, api):
                user = {"email": "ada@example.com", "digest": {"topics": ["orders"], "every": 60}}
                assert (await api.put("/users/digest-fan", json=user)).status_code == 200
                sent = (await api.post("/jobs/email", json=email("Order 1 shipped"))).json()["jobId"]
                digest_id = await in_digest(api, sent)
                cancelled = (await api.post("/jobs/email", json=email("Order 2 shipped"))).json()["jobId"]
                assert await in_digest(api, cancelled) == digest_id
                assert (await api.post(f"/jobs/{cancelled}/cancel")).status_code in (200, 202)
                assert await status(api, cancelled, {"cancelled"}) == "cancelled"
                for _ in range(1800):  # the digest goes 60 s after it opened
                    if (await api.get(f"/jobs/{sent}/status")).json()["status"] == "completed":
                        break
                    await asyncio.sleep(0.1)
                assert (await api.get(f"/jobs/{sent}/status")).json()["status"] == "completed"
                await save_workflow(client, sent, out_dir, "digested_item_sent")
                await save_workflow(client, cancelled, out_dir, "digested_item_cancelled")
                await save_workflow(client, digest_workflow_of(digest_id), out_dir, "digest_sent_open")


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1])))
    exit_skipping_teardown(0)
