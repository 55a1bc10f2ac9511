"""Record the histories of chained jobs (`then`) and reports for tests/replay/test_replay.py.

    python -m tests.replay.record_chains tests/replay/histories/chains-v1

Reports list a user's jobs from visibility, which the time-skipping test server lacks, so these
are recorded on the dev server, through the API itself:
- `then_parent_completed` and `then_follow_up_completed`: an email whose `then` is an SMS; the
  parent completed and started the follow-up as a child (`<jobId>-then`), which was delivered;
- `then_parent_failed`: a webhook refused for good (404) with a `then`: failed, no child started;
- `report_built`: a `notification-history` report of a user with one typed notification.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from common.models import user_workflow_id
from common.runtime import exit_skipping_teardown
from devstack.smtp_sink import SmtpSink
from tests.api.helpers import FINAL, address_of, dev_server, poll
from tests.replay.recording import KEY, save_workflow, through_the_api
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import free_port, local_settings


async def final(api, job_id: str) -> dict:
    """The job's state once final and, where it calls back, once the callback is through."""
    return await poll(
        api,
        f"/jobs/{job_id}/status",
        lambda body: body["status"] in FINAL and (body.get("callback") or {}).get("status") != "pending",
    )


async def record(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    async with dev_server() as env:
        with (
            tempfile.TemporaryDirectory() as tmp,
            SmtpSink(Path(tmp) / "outbox", port=free_port()) as sink,
            HttpReceiver([Answer(200, {"id": "sms-1"})]) as gateway,
            HttpReceiver([Answer(404)]) as gone,
        ):
            settings = local_settings(
                Path(tmp),
                temporal_address=address_of(env),
                api_keys=[KEY],
                smtp_port=sink.port,
                sms_gateway_url=gateway.url + "/messages",
            )
            async with through_the_api(env, settings) as (client, api):
                follow_up = {"type": "sms", "phone": "+14155550100", "message": "Shipped"}
                parent = (
                    await api.post(
                        "/jobs/email",
                        json={"to": "ada@example.com", "subject": "Order", "body": "Thanks", "then": follow_up},
                    )
                ).json()["jobId"]
                done = await final(api, parent)
                assert done["status"] == "completed" and done["next"] == f"{parent}-then", done
                assert (await final(api, done["next"]))["status"] == "completed"
                assert len(gateway.received) == 1
                await save_workflow(client, parent, out_dir, "then_parent_completed")
                await save_workflow(client, done["next"], out_dir, "then_follow_up_completed")

                refused = (
                    await api.post(
                        "/notify/webhook",
                        json={"url": gone.url + "/hook", "data": {"n": 1}, "attempts": 1, "then": follow_up},
                    )
                ).json()
                failed = await final(api, refused["notificationId"])
                assert failed["status"] == "failed" and not failed.get("next"), failed
                await save_workflow(client, refused["notificationId"], out_dir, "then_parent_failed")

                assert (await api.put("/users/ada", json={"email": "ada@example.com"})).status_code == 200
                welcome = (await api.post("/notifications", json={"type": "welcome", "userId": "ada"})).json()
                assert (await final(api, welcome["jobId"]))["status"] == "completed"
                report = (
                    await api.post("/reports", json={"userId": "ada", "reportType": "notification-history"})
                ).json()["jobId"]
                assert (await final(api, report))["status"] == "completed"
                assert (await api.get(f"/reports/{report}/result")).status_code == 200
                await save_workflow(client, report, out_dir, "report_built")
                await client.get_workflow_handle(user_workflow_id("ada")).terminate("recorded")


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1])))
    exit_skipping_teardown(0)
