"""Record the histories of jobs leaving their digest by its `take_out` update (`digest-leave-answered`) for
tests/replay/test_replay.py.

    python -m tests.replay.record_digest_leaves tests/replay/histories/digest-v2

On the dev server (PUT /users is an update-with-start), through the API, for a user who digests the topic
`orders` every hour:
- `cancelled_before_the_send`: an email cancelled (POST /jobs/{id}/cancel) out of its digest: taken out;
- `released_during_the_send`: one released (POST /jobs/{id}/release) while the digest's email was held at the
  SMTP sink (its send had begun): it waited and completed in the digest;
- `cancelled_during_the_send`: one cancelled at that moment: it completed in the digest too;
- `sent_with_the_digest`: the digest's third item, left alone: completed in the digest;
- `digest_answered_leaves_open`: the digest's workflow: three joins, a `take_out` answered `taken`, the
  digest's email, two `take_out`s answered "being sent", the items told (still open).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from common.models import digest_workflow_of
from common.runtime import exit_skipping_teardown
from devstack.smtp_sink import SmtpSink, read_outbox
from tests.api.helpers import address_of, dev_server
from tests.replay.record_digests import in_digest
from tests.replay.record_prefs import status
from tests.replay.recording import KEY, save_workflow, through_the_api
from tests.support.held_smtp import HeldDigestEmails
from tests.support.temporal import free_port, local_settings

USER = "digest-leaver"


def email(subject: str) -> dict[str, str]:
    return {"to": "ada@example.com", "subject": subject, "body": "Hello", "userId": USER, "topic": "orders"}


async def record(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as tmp, SmtpSink(Path(tmp) / "outbox", port=free_port()) as sink:
            held = HeldDigestEmails(sink)
            settings = local_settings(Path(tmp), temporal_address=address_of(env), api_keys=[KEY], smtp_port=sink.port)
            async with through_the_api(env, settings) as (client, api):
                user = {"email": "ada@example.com", "digest": {"topics": ["orders"], "every": 3600}}
                assert (await api.put(f"/users/{USER}", json=user)).status_code == 200
                jobs = {}
                for name in ("cancelled_before_the_send", "released_during_the_send", "cancelled_during_the_send"):
                    jobs[name] = (await api.post("/jobs/email", json=email(name))).json()["jobId"]
                    digest_id = await in_digest(api, jobs[name])
                jobs["sent_with_the_digest"] = (await api.post("/jobs/email", json=email("kept"))).json()["jobId"]
                assert await in_digest(api, jobs["sent_with_the_digest"]) == digest_id

                before = jobs["cancelled_before_the_send"]
                assert (await api.post(f"/jobs/{before}/cancel")).status_code == 202
                assert await status(api, before, {"cancelled", "completed"}) == "cancelled"

                assert (await api.post(f"/users/{USER}/digests/{digest_id}/send")).status_code == 202
                assert await asyncio.to_thread(held.arrived.wait, 30), "the digest's email never reached the sink"
                released, cancelled = jobs["released_during_the_send"], jobs["cancelled_during_the_send"]
                assert (await api.post(f"/jobs/{released}/release")).status_code == 202
                assert (await api.post(f"/jobs/{cancelled}/cancel")).status_code == 202
                await asyncio.sleep(1)  # both ask the digest while its email is held
                held.go.set()
                for job_id in (released, cancelled, jobs["sent_with_the_digest"]):
                    assert await status(api, job_id, {"completed", "cancelled", "failed"}) == "completed"
                [mail] = read_outbox(sink.outbox)
                assert mail["Message-ID"] == f"<{digest_id}@herald>"
                for name, job_id in jobs.items():
                    await save_workflow(client, job_id, out_dir, name)
                await save_workflow(client, digest_workflow_of(digest_id), out_dir, "digest_answered_leaves_open")


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1])))
    exit_skipping_teardown(0)
