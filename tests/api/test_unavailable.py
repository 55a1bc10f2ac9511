"""Temporal unreachable → 503 with Retry-After, never a 500 or a hang; nothing acknowledged that was not started."""

from __future__ import annotations

import asyncio
import time

from api.main import create_app
from common.settings import Settings
from tests.api.helpers import AUTH, address_of, api_client, assert_error, start_dev_server
from tests.support.temporal import ENCRYPTION_KEY, free_port

EMAIL = {"to": "ada@example.com", "subject": "Hello", "body": "Text"}
# The client retries for about 3 s (api/core/temporal.py CLIENT_RETRIES); then a 503, not a hang.
MAX_WAIT_S = 8


def assert_unavailable(response, started: float) -> None:
    assert time.monotonic() - started < MAX_WAIT_S, "the API hung instead of answering 503"
    assert_error(response, 503, "temporal_unavailable")
    assert int(response.headers["retry-after"]) > 0


async def assert_still_refuses_bad_input(api) -> None:
    """Input errors do not depend on Temporal: still 400 / 401 while it is down."""
    body = assert_error(await api.post("/jobs/email", json={**EMAIL, "to": "nope"}), 400, "validation_error")
    assert [d["field"] for d in body["details"]] == ["to"]
    assert_error(
        await api.post("/notify/webhook", json={"url": "http://10.0.0.1/", "data": 1}), 400, "validation_error"
    )
    assert_error(
        await api.post("/jobs/sms", content=b"{", headers={"content-type": "application/json"}), 400, "invalid_json"
    )
    assert_error(
        await api.post("/jobs/email", json=EMAIL, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized"
    )


async def test_nothing_listening_is_503_with_retry_after(make_app):
    app = make_app(temporal_address=f"127.0.0.1:{free_port()}")
    async with api_client(app, headers=AUTH) as api:
        for method, path, body in [
            ("POST", "/jobs/email", EMAIL),
            ("POST", "/notify/sms", {"phone": "+14155550100", "message": "m"}),
            ("POST", "/jobs/cleanup", {"task": "delete_temp"}),
            ("GET", "/jobs/email-123/status", None),
            ("GET", "/notifications/x", None),
            ("POST", "/jobs/x/cancel", None),
        ]:
            started = time.monotonic()
            assert_unavailable(await api.request(method, path, json=body), started)
        started = time.monotonic()
        assert_unavailable(await api.get("/readyz"), started)
        assert (await api.get("/healthz")).status_code == 200
        await assert_still_refuses_bad_input(api)


async def test_temporal_stopped_then_back(tmp_path):
    port = free_port()
    database = str(tmp_path / "temporal.db")
    env = await start_dev_server(port=port, dev_server_database_filename=database)
    app = create_app(
        Settings(
            temporal_address=address_of(env),
            api_keys=["test-key"],
            encryption_key=ENCRYPTION_KEY,
            webhook_allow_hosts=["127.0.0.1/8"],
            data_dir=tmp_path,
        )
    )
    try:
        async with api_client(app, headers=AUTH) as api:
            # No worker here: the job just waits in its queue, durably recorded.
            response = await api.post("/jobs/email", json=EMAIL)
            assert response.status_code == 202, response.text
            job_id = response.json()["jobId"]
            assert (await api.get(f"/jobs/{job_id}/status")).json()["status"] == "queued"
            assert (await api.get(f"/jobs/{job_id}")).json()["status"] == "waiting"
            assert (await api.get(f"/notifications/{job_id}")).json()["status"] == "queued"
            assert (await api.get("/readyz")).status_code == 200

            await env.shutdown()
            env = None

            started = time.monotonic()
            assert_unavailable(await api.post("/jobs/email", json=EMAIL), started)
            started = time.monotonic()
            assert_unavailable(await api.get(f"/jobs/{job_id}/status"), started)
            started = time.monotonic()
            assert_unavailable(await api.get("/readyz"), started)
            await assert_still_refuses_bad_input(api)

            # Temporal comes back (same port, same database): the same API instance recovers, and the
            # job accepted before the outage is still there, while nothing refused was recorded.
            env = await start_dev_server(port=port, dev_server_database_filename=database)
            deadline = time.monotonic() + 20
            while (await api.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "the API did not reconnect to Temporal"
                await asyncio.sleep(0.2)
            assert (await api.get(f"/jobs/{job_id}/status")).json()["status"] == "queued"
            response = await api.post("/jobs/email", json=EMAIL)
            assert response.status_code == 202, response.text
            expected = sorted([job_id, response.json()["jobId"]])
            deadline = time.monotonic() + 5
            while (ids := sorted([e.id async for e in env.client.list_workflows()])) != expected:
                assert time.monotonic() < deadline, ids
                await asyncio.sleep(0.2)
    finally:
        if env is not None:
            await env.shutdown()
