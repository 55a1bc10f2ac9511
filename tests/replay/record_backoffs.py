"""Record the histories of jobs whose every retry backoff is the run's own timer (`releasable-backoffs`:
each attempt after the first an activity of its own) for tests/replay/test_replay.py.

    python -m tests.replay.record_backoffs tests/replay/histories/backoff-v1

On the dev server, through the API:
- `sms_released_in_two_backoffs`: an SMS answered 503, 500, 200 (3 attempts, backoff 60 s exponential),
  released (POST /jobs/{id}/release) in its first and its second backoff;
- `webhook_failed_after_three_attempts`: a webhook answered 503 three times (fixed 200 ms backoffs): failed,
  a dead letter;
- `rate_limited_webhook_retried`: on workers whose webhook channel has a rate limit, a webhook whose first
  attempt (an activity through the queue) is answered 500, then 200 by the second, its own activity.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from common.runtime import exit_skipping_teardown
from tests.api.helpers import address_of, dev_server
from tests.replay.record_rate import final
from tests.replay.recording import KEY, save_workflow, through_the_api
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import local_settings


async def in_backoff(api, job_id: str, done: int) -> None:
    for _ in range(400):
        body = (await api.get(f"/jobs/{job_id}/status")).json()
        if (body["status"], body["attempts"]) == ("delayed", done):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} never waited out the backoff after attempt {done}: {body}")


async def record(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    async with dev_server() as env:
        with (
            tempfile.TemporaryDirectory() as tmp,
            HttpReceiver([Answer(503), Answer(500), Answer(200, {"id": "sms-3"})]) as gateway,
            HttpReceiver([Answer(503)]) as down,
            HttpReceiver([Answer(500), Answer(200)]) as flaky,
        ):
            settings = local_settings(
                Path(tmp), temporal_address=address_of(env), api_keys=[KEY], sms_gateway_url=gateway.url
            )
            async with through_the_api(env, settings) as (client, api):
                sms = {
                    "phone": "+14155550100",
                    "message": "Hi",
                    "attempts": 3,
                    "backoff": {"type": "exponential", "delay": 60_000},
                }
                job_id = (await api.post("/jobs/sms", json=sms)).json()["jobId"]
                for done in (1, 2):
                    await in_backoff(api, job_id, done)
                    assert (await api.post(f"/jobs/{job_id}/release")).status_code == 202
                state = await final(api, f"/jobs/{job_id}/status")
                assert (state["status"], state["attempts"]) == ("completed", 3), state
                await save_workflow(client, job_id, out_dir, "sms_released_in_two_backoffs")

                hook = {"url": down.url, "data": {"n": 1}, "backoff": {"type": "fixed", "delay": 200}}
                job_id = (await api.post("/notify/webhook", json=hook)).json()["notificationId"]
                state = await final(api, f"/jobs/{job_id}/status")
                assert (state["status"], state["attempts"]) == ("failed", 3), state
                await save_workflow(client, job_id, out_dir, "webhook_failed_after_three_attempts")

            limited = local_settings(
                Path(tmp), temporal_address=address_of(env), api_keys=[KEY], webhook_rate_limit=5.0
            )
            async with through_the_api(env, limited) as (client, api):
                hook = {"url": flaky.url, "data": {"n": 2}, "backoff": {"type": "fixed", "delay": 500}}
                job_id = (await api.post("/notify/webhook", json=hook)).json()["notificationId"]
                state = await final(api, f"/jobs/{job_id}/status")
                assert (state["status"], state["attempts"]) == ("completed", 2), state
                await save_workflow(client, job_id, out_dir, "rate_limited_webhook_retried")


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1])))
    exit_skipping_teardown(0)
