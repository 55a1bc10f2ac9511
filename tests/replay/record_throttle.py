"""Record the histories of SMS runs that take their quota slot at send time (`sms-quota-at-send`) for
tests/replay/test_replay.py.

    python -m tests.replay.record_throttle tests/replay/histories/throttle-v1

On the dev server (the quota's update-with-start needs it), through the API, HERALD_SMS_PER_HOUR=2;
each SMS's first attempt fails for good (a dead letter), and is redriven:
- `redriven_sms_sent`: its number had a slot left; the run takes it and sends;
- `redriven_sms_waits_for_a_slot_open`: its number's hour was full (a second SMS went out); the run
  is refused, writes `delayed` into its memo and waits on its timer for the slot (still open).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from common.runtime import exit_skipping_teardown
from tests.api.helpers import ADMIN, ADMIN_TOKEN, SMS_TOKEN, ScriptedGateway, ThreadedServer, address_of, dev_server
from tests.replay.recording import KEY, save_workflow, through_the_api
from tests.support.http_receiver import Answer
from tests.support.temporal import local_settings


async def status(api, job_id: str, wanted: set[str]) -> str:
    for _ in range(400):
        word = (await api.get(f"/jobs/{job_id}/status")).json()["status"]
        if word in wanted:
            return word
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} never reached {wanted}")


async def dead_letter(api, phone: str) -> str:
    job_id = (await api.post("/jobs/sms", json={"phone": phone, "message": "code 1", "attempts": 1})).json()["jobId"]
    assert await status(api, job_id, {"completed", "failed"}) == "failed"
    return job_id


async def record(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as tmp:
            gateway = ScriptedGateway(Path(tmp) / "sms", SMS_TOKEN)
            with ThreadedServer(gateway) as server:
                settings = local_settings(
                    Path(tmp),
                    temporal_address=address_of(env),
                    api_keys=[KEY],
                    admin_token=ADMIN_TOKEN,
                    sms_gateway_url=f"http://127.0.0.1:{server.port}/messages",
                    sms_gateway_token=SMS_TOKEN,
                    sms_per_hour=2,
                )
                free, full = "+14155550101", "+14155550102"
                for phone in (free, full):
                    gateway.script(phone, [Answer(400, {"error": "bad number"}), Answer(200, {"id": "sent"})])
                async with through_the_api(env, settings) as (client, api):
                    sent = await dead_letter(api, free)
                    assert (await api.post(f"/admin/dlq/{sent}/retry", headers=ADMIN)).status_code == 202
                    assert await status(api, sent, {"completed", "failed"}) == "completed"
                    await save_workflow(client, sent, out_dir, "redriven_sms_sent")

                    waiting = await dead_letter(api, full)
                    other = (await api.post("/jobs/sms", json={"phone": full, "message": "code 2"})).json()["jobId"]
                    assert await status(api, other, {"completed", "failed"}) == "completed"
                    assert (await api.post(f"/admin/dlq/{waiting}/retry", headers=ADMIN)).status_code == 202
                    assert await status(api, waiting, {"delayed"}) == "delayed"
                    await save_workflow(client, waiting, out_dir, "redriven_sms_waits_for_a_slot_open")


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1])))
    exit_skipping_teardown(0)
