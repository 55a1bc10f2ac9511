"""Record CleanupWorkflow histories for tests/replay/test_replay.py.

    python -m tests.replay.record_cleanup tests/replay/histories/cleanup-v1

A cleanup runs either from a built-in schedule (its usual life: an empty job id, so the run takes
its workflow id as its job id) or from POST /jobs/cleanup. Schedules need the dev server (the
time-skipping test server has none), so both are recorded there, with real files in real
directories:
- `cleanup_api_completed`: POST /jobs/cleanup `delete_temp`: a stale temporary file removed;
- `cleanup_scheduled_completed`: the built-in `token-cleanup` schedule, triggered once: an
  expired session removed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common.builtin_schedules import ensure_builtin_schedule
from common.runtime import exit_skipping_teardown
from common.schedules import BUILTIN_SCHEDULES
from tests.api.helpers import FINAL, address_of, dev_server, poll
from tests.replay.recording import KEY, save_workflow, through_the_api
from tests.support.temporal import local_settings

DAY_S = 86_400


def stale_file(directory: Path, name: str, age_s: float, text: str = "stale") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


async def scheduled_run(client, schedule_id: str) -> str:
    """Trigger the schedule once; the workflow id of the run it started."""
    handle = client.get_schedule_handle(schedule_id)
    await handle.trigger()
    for _ in range(200):
        actions = (await handle.describe()).info.recent_actions
        if actions:
            return actions[-1].action.workflow_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"{schedule_id} started no run")


async def record(out_dir: Path) -> None:
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as tmp:
            settings = local_settings(Path(tmp), temporal_address=address_of(env), api_keys=[KEY])
            async with through_the_api(env, settings) as (client, api):
                temp = stale_file(settings.temp_dir, "upload.part", age_s=(settings.temp_max_age_hours + 1) * 3600)
                job_id = (await api.post("/jobs/cleanup", json={"task": "delete_temp"})).json()["jobId"]
                done = await poll(api, f"/jobs/{job_id}/status", lambda body: body["status"] in FINAL)
                assert done["status"] == "completed" and not temp.exists(), done
                await save_workflow(client, job_id, out_dir, "cleanup_api_completed")

                [tokens] = [d for d in BUILTIN_SCHEDULES if d.id == "token-cleanup"]
                session = stale_file(
                    settings.session_dir,
                    "expired.json",
                    age_s=DAY_S,
                    text=json.dumps({"expiresAt": time.time() - DAY_S}),
                )
                await ensure_builtin_schedule(client, settings, tokens)
                run_id = await scheduled_run(client, tokens.id)
                # Its job id is its workflow id, which the API reads it by.
                done = await poll(api, f"/jobs/{run_id}/status", lambda body: body["status"] in FINAL)
                assert done["status"] == "completed", done
                assert not session.exists(), "the expired session is still there"
                await save_workflow(client, run_id, out_dir, "cleanup_scheduled_completed")
                await client.get_schedule_handle(tokens.id).delete()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.replay.record_cleanup OUT_DIR")
    Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
    asyncio.run(record(Path(sys.argv[1])))
    exit_skipping_teardown(0)
