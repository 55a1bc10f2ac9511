"""Record the histories of notifications decided by their user's preferences (`preferences-at-send`,
`releasable-waits`, `user-tells-waiting-jobs`) for tests/replay/test_replay.py.

    python -m tests.replay.record_prefs tests/replay/histories/prefs-v1

On the dev server (PUT /users is an update-with-start), through the API:
- `quiet_hours_deferred_open`: an email to a user inside their 9-hour quiet hours: `delayed`,
  registered with the user's workflow, waiting on its timer (still open);
- `channel_opt_out_suppressed`: an SMS to a user who opted out of SMS: suppressed;
- `quiet_hours_told_sent`: an email deferred by quiet hours, woken when a PUT removed them, and sent;
- `released_delay_sent`: an email with a one-hour delay, released (POST /jobs/{id}/release), sent;
- `user_told_waiting_jobs_open`: the second user's workflow: a job registered, a PUT that told it.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common.models import user_workflow_id
from common.runtime import exit_skipping_teardown
from devstack.smtp_sink import SmtpSink
from tests.api.helpers import address_of, dev_server
from tests.replay.recording import KEY, save_workflow, through_the_api
from tests.support.temporal import free_port, local_settings

EMAIL = {"to": "ada@example.com", "subject": "Hi", "body": "Hello"}


async def status(api, job_id: str, wanted: set[str]) -> str:
    for _ in range(400):
        word = (await api.get(f"/jobs/{job_id}/status")).json()["status"]
        if word in wanted:
            return word
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} never reached {wanted}")


def quiet_now() -> dict[str, str]:
    start = datetime.now(UTC) - timedelta(minutes=1)
    return {"start": start.strftime("%H:%M"), "end": (start + timedelta(hours=9)).strftime("%H:%M")}


async def record(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as tmp, SmtpSink(Path(tmp) / "outbox", port=free_port()) as sink:
            settings = local_settings(Path(tmp), temporal_address=address_of(env), api_keys=[KEY], smtp_port=sink.port)
            async with through_the_api(env, settings) as (client, api):
                quiet = {"email": "ada@example.com", "quietHours": quiet_now()}
                # 1. deferred, still waiting.
                assert (await api.put("/users/night-owl", json=quiet)).status_code == 200
                deferred = (await api.post("/notify/email", json=EMAIL | {"userId": "night-owl"})).json()
                assert await status(api, deferred["notificationId"], {"delayed"}) == "delayed"
                await save_workflow(client, deferred["notificationId"], out_dir, "quiet_hours_deferred_open")

                # 2. suppressed.
                no_sms = {"email": "ada@example.com", "channels": {"email": True, "sms": False}}
                assert (await api.put("/users/no-sms", json=no_sms)).status_code == 200
                sms = {"phone": "+14155550100", "message": "Hi", "userId": "no-sms"}
                suppressed = (await api.post("/jobs/sms", json=sms)).json()["jobId"]
                assert await status(api, suppressed, {"suppressed", "completed", "failed"}) == "suppressed"
                await save_workflow(client, suppressed, out_dir, "channel_opt_out_suppressed")

                # 3. deferred, then told by the user's workflow and sent; 5. that user's workflow.
                assert (await api.put("/users/changes-mind", json=quiet)).status_code == 200
                told = (await api.post("/jobs/email", json=EMAIL | {"userId": "changes-mind"})).json()["jobId"]
                assert await status(api, told, {"delayed"}) == "delayed"
                await asyncio.sleep(0.5)  # its registration reaches the user's workflow
                assert (await api.put("/users/changes-mind", json={"email": "ada@example.com"})).status_code == 200
                assert await status(api, told, {"completed", "failed", "suppressed"}) == "completed"
                await save_workflow(client, told, out_dir, "quiet_hours_told_sent")
                await save_workflow(client, user_workflow_id("changes-mind"), out_dir, "user_told_waiting_jobs_open")

                # 4. a delay released.
                delayed = (await api.post("/jobs/email", json=EMAIL | {"delay": 3_600_000})).json()["jobId"]
                assert await status(api, delayed, {"delayed"}) == "delayed"
                await asyncio.sleep(0.5)  # its first workflow task has started the timer
                assert (await api.post(f"/jobs/{delayed}/release")).status_code == 202
                assert await status(api, delayed, {"completed", "failed"}) == "completed"
                await save_workflow(client, delayed, out_dir, "released_delay_sent")


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1])))
    exit_skipping_teardown(0)
