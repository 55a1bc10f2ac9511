"""Record the histories of users, typed notifications and SMS quotas for tests/replay/test_replay.py.

    python -m tests.replay.record_entities tests/replay/histories/entities-v1

Update-with-start (PUT /users, the SMS throttle) needs the dev server (the time-skipping test
server lacks it), so these are recorded apart from record.py's, through the API itself:
- `user_two_puts_open`: a user created by one PUT, replaced by a second, read by GET; still open;
- `typed_welcome_sent`: a welcome email to that user, rendered and sent (NotificationWorkflow
  with the `typed` input);
- `typed_unknown_user_failed`: a typed notification to a user never PUT: failed at once;
- `sms_quota_full_open` and `sms_quota_released_open`: two numbers' quotas (HERALD_SMS_PER_HOUR=2):
  the first filled, then refused for a request that also reserved (and so released) the second.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from api.core.errors import ApiError
from api.jobs.throttle import quota_key, reserve_sms
from common.models import user_workflow_id
from common.runtime import exit_skipping_teardown
from devstack.smtp_sink import SmtpSink
from tests.api.helpers import address_of, dev_server
from tests.replay.recording import KEY, save_workflow, through_the_api
from tests.support.temporal import free_port, local_settings


async def final(api, job_id: str) -> str:
    for _ in range(200):
        status = (await api.get(f"/notifications/{job_id}")).json()["status"]
        if status in ("success", "failed"):
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} did not finish")


async def record(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as tmp, SmtpSink(Path(tmp) / "outbox", port=free_port()) as sink:
            settings = local_settings(
                Path(tmp), temporal_address=address_of(env), api_keys=[KEY], smtp_port=sink.port, sms_per_hour=2
            )
            async with through_the_api(env, settings) as (client, api):
                # 1. a user: two PUTs and a GET.
                assert (
                    await api.put("/users/ada", json={"email": "ada@example.com", "name": "Ada"})
                ).status_code == 200
                assert (
                    await api.put(
                        "/users/ada",
                        json={"email": "ada@example.com", "name": "Ada L.", "locale": "de", "optOut": ["sms"]},
                    )
                ).status_code == 200
                assert (await api.get("/users/ada")).json()["name"] == "Ada L."
                await save_workflow(client, user_workflow_id("ada"), out_dir, "user_two_puts_open")

                # 2. a welcome email, rendered and sent; 3. one to a user never PUT.
                sent = (await api.post("/notifications", json={"type": "welcome", "userId": "ada"})).json()["jobId"]
                assert await final(api, sent) == "success"
                await save_workflow(client, sent, out_dir, "typed_welcome_sent")
                unknown = (await api.post("/notifications", json={"type": "welcome", "userId": "nobody"})).json()
                assert await final(api, unknown["jobId"]) == "failed"
                await save_workflow(client, unknown["jobId"], out_dir, "typed_unknown_user_failed")

                # 4. a full quota, and one reserved and released when the other refused.
                full, other = "+14155550100", "+14155550199"
                assert await reserve_sms(client, settings, [full, full])
                try:
                    await reserve_sms(client, settings, [other, full])
                    raise AssertionError("the third SMS to the number was not refused")
                except ApiError as refused:
                    assert refused.status == 429
                await save_workflow(client, quota_key("phone", full), out_dir, "sms_quota_full_open")
                await save_workflow(client, quota_key("phone", other), out_dir, "sms_quota_released_open")


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1])))
    exit_skipping_teardown(0)
