"""CleanupWorkflow: real files in real directories, removed by age or by expiry."""

from __future__ import annotations

import json
import os
import time

from api.jobs.starter import cleanup_job, start_job
from tests.support.temporal import herald_client, job_spec, job_state, running_workers

DAY = 86400


def touch(path, age_seconds: float, content: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    then = time.time() - age_seconds
    os.utime(path, (then, then))


async def run_cleanup(env, settings, task: str) -> dict:
    async with running_workers(herald_client(env), settings):
        handle = (await start_job(herald_client(env), cleanup_job(job_spec("cleanup"), task))).handle
        await handle.result()
    state = await job_state(herald_client(env), handle)
    assert state["phase"] == "completed"
    return state["result"]


async def test_delete_temp_removes_only_files_older_than_the_threshold(time_env, make_settings, tmp_path):
    settings = make_settings(temp_max_age_hours=24)
    touch(settings.temp_dir / "old.bin", 2 * DAY)
    touch(settings.temp_dir / "nested" / "old.part", 3 * DAY)
    touch(settings.temp_dir / "fresh.bin", 60)
    result = await run_cleanup(time_env, settings, "delete_temp")
    assert sorted(result["removed"]) == ["nested/old.part", "old.bin"]
    assert result["kept"] == 1
    assert (settings.temp_dir / "fresh.bin").exists() and not (settings.temp_dir / "old.bin").exists()


async def test_remove_old_logs_prunes_only_old_log_files(time_env, make_settings):
    settings = make_settings(log_retention_days=14)
    touch(settings.log_dir / "app-2020.log", 30 * DAY)
    touch(settings.log_dir / "app-2020.log.gz", 30 * DAY)
    touch(settings.log_dir / "app.log", DAY)
    touch(settings.log_dir / "keep.conf", 30 * DAY)
    result = await run_cleanup(time_env, settings, "remove_old_logs")
    assert sorted(result["removed"]) == ["app-2020.log", "app-2020.log.gz"]
    assert (settings.log_dir / "keep.conf").exists() and (settings.log_dir / "app.log").exists()


async def test_expire_sessions_deletes_expired_session_files(time_env, make_settings):
    settings = make_settings()
    touch(settings.session_dir / "expired.json", 0, json.dumps({"expiresAt": "2020-01-01T00:00:00Z"}))
    touch(settings.session_dir / "epoch.json", 0, json.dumps({"expiresAt": time.time() - 5}))
    touch(settings.session_dir / "live.json", 0, json.dumps({"expiresAt": time.time() + 3600}))
    touch(settings.session_dir / "garbled.json", 0, "{not json")
    result = await run_cleanup(time_env, settings, "expire_sessions")
    assert sorted(result["removed"]) == ["epoch.json", "expired.json"]
    assert result["kept"] == 2


async def test_a_missing_directory_is_nothing_to_clean(time_env, make_settings, tmp_path):
    result = await run_cleanup(time_env, make_settings(temp_dir=tmp_path / "absent"), "delete_temp")
    assert result["removed"] == [] and result["kept"] == 0
