"""Record the histories of jobs and a batch on rate-limited workers (`rate-limited-first-attempt`,
`rate-limited-batch-slices`: activities/rate_limit.py) for tests/replay/test_replay.py.

    python -m tests.replay.record_rate tests/replay/histories/rate-v1

On the dev server (schedules need it), through the API, every channel at 5 sends/s:
- `declined_first_attempt_sent`: an email whose first attempt the worker declined as a local
  activity, then sent as an activity through the queue;
- `declined_first_attempt_retried`: a webhook the same way, answered 500 then 200: attempts 1 and 2
  are the one activity's;
- `scheduled_run_declined_sent`: a schedule's email run (an empty job id: the run takes its workflow
  id), declined and sent the same way;
- `batch_one_by_one`: an email batch whose one slice of four was declined: then four one-item slices.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from common.runtime import exit_skipping_teardown
from devstack.smtp_sink import SmtpSink, read_outbox
from tests.api.helpers import address_of, dev_server
from tests.replay.record_cleanup import scheduled_run
from tests.replay.recording import KEY, save_workflow, through_the_api
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import free_port, local_settings

RATE = 5.0


async def final(api, path: str) -> dict:
    for _ in range(600):
        body = (await api.get(path)).json()
        if body.get("status") in {"completed", "failed", "cancelled"} or body.get("done"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never ended")


async def record(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    async with dev_server() as env:
        with (
            tempfile.TemporaryDirectory() as tmp,
            SmtpSink(Path(tmp) / "outbox", port=free_port()) as sink,
            HttpReceiver([Answer(500), Answer(200)]) as hook,
        ):
            settings = local_settings(
                Path(tmp),
                temporal_address=address_of(env),
                api_keys=[KEY],
                smtp_port=sink.port,
                email_rate_limit=RATE,
                webhook_rate_limit=RATE,
            )
            async with through_the_api(env, settings) as (client, api):
                email = {"to": "ada@example.com", "subject": "Hello", "body": "Body text"}
                job_id = (await api.post("/jobs/email", json=email)).json()["jobId"]
                state = await final(api, f"/jobs/{job_id}/status")
                assert (state["status"], state["attempts"]) == ("completed", 1), state
                await save_workflow(client, job_id, out_dir, "declined_first_attempt_sent")

                hook_job = {"url": hook.url, "data": {"n": 1}, "backoff": {"type": "fixed", "delay": 500}}
                job_id = (await api.post("/notify/webhook", json=hook_job)).json()["notificationId"]
                state = await final(api, f"/jobs/{job_id}/status")
                assert (state["status"], state["attempts"]) == ("completed", 2), state
                await save_workflow(client, job_id, out_dir, "declined_first_attempt_retried")

                created = await api.post("/schedules", json={"cron": "0 3 1 1 *", "job": {"type": "email", **email}})
                assert created.status_code == 201, created.text
                run_id = await scheduled_run(client, created.json()["scheduleId"])
                state = await final(api, f"/jobs/{run_id}/status")
                assert (state["status"], state["attempts"]) == ("completed", 1), state
                await save_workflow(client, run_id, out_dir, "scheduled_run_declined_sent")
                await client.get_schedule_handle(created.json()["scheduleId"]).delete()

                items = [{"to": f"user{n}@example.com", "subject": "News", "body": "x"} for n in range(4)]
                batch = (await api.post("/notify/batch", json={"channel": "email", "items": items})).json()
                counts = await final(api, f"/batches/{batch['batchId']}")
                assert counts["counts"]["success"] == 4, counts
                await client.get_workflow_handle(batch["batchId"]).result()
                await save_workflow(client, batch["batchId"], out_dir, "batch_one_by_one")
            assert len(read_outbox(sink.outbox)) == 1 + 1 + 4


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1])))
    exit_skipping_teardown(0)
