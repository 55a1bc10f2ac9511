"""`python -m bench.dlq`: how fast GET /admin/dlq answers with 10,000 dead letters.

Starts a dev server the way `make run` does (a SQLite file, tuned_args), fills it with N dead
letters of four types without running them (each started on a queue no worker polls with the
memo and search attributes a failed job has, then terminated: a terminated job is a dead letter
too), and times the API's DLQ routes in process (create_app over ASGI, no network between):
the first page, one type's first page, a page deep behind a cursor, and a single redrive.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from bench.report import write_figures
from common.jobs import email_job
from common.models import JOB_STATUS_KEY, JOB_TYPE_KEY, LEAN_LIFECYCLE_INPUT, STATE_MEMO_KEY, JobSpec
from common.names import NOTIFICATION_WORKFLOW
from common.runtime import exit_skipping_teardown
from common.settings import Settings
from common.temporal import client_for
from devstack.temporal_server import TEMPORAL_BIN, tuned_args

KINDS = ["email", "sms", "webhook", "cleanup"]
ADMIN = {"Authorization": "Bearer bench-admin"}
# A task queue no worker polls: the runs are started and terminated without ever running.
IDLE_QUEUE = "herald-bench-idle"
CREATED_AT = "2026-01-01T00:00:00+00:00"


async def fill(client: Client, count: int, concurrency: int = 64) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        kind = KINDS[n % len(KINDS)]
        job_id = f"{kind}-dlq{n:05d}-{uuid.uuid4().hex[:6]}"
        state = {
            "job_id": job_id,
            "kind": kind,
            "family": "jobs",
            "phase": "failed",
            "max_attempts": 3,
            "attempts": 3,
            "error": f"bench failure {n}",
            "created_at": CREATED_AT,
            "updated_at": "2026-01-01T00:00:10+00:00",
            "deliveries": [],
        }
        spec = JobSpec(
            job_id=job_id, kind="email", family="jobs", created_at=CREATED_AT, lifecycle=LEAN_LIFECYCLE_INPUT
        )
        request = email_job(spec, "dead@example.com", "bench", "a dead letter")
        async with gate:
            handle = await client.start_workflow(
                NOTIFICATION_WORKFLOW,
                request,
                id=job_id,
                task_queue=IDLE_QUEUE,
                memo={STATE_MEMO_KEY: state},
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(JOB_TYPE_KEY, kind), SearchAttributePair(JOB_STATUS_KEY, "failed")]
                ),
            )
            await handle.terminate(reason="bench: a dead letter")

    started = time.monotonic()
    await asyncio.gather(*(one(n) for n in range(count)))
    return time.monotonic() - started


async def timed(api: httpx.AsyncClient, method: str, url: str, repeat: int, **kwargs) -> dict:
    samples, body = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = await api.request(method, url, headers=ADMIN, **kwargs)
        samples.append((time.perf_counter() - t0) * 1000)
        assert response.status_code in (200, 202), response.text
        body = response.json()
    return {"p50_ms": round(statistics.median(samples), 1), "max_ms": round(max(samples), 1), "body": body}


async def visible(api: httpx.AsyncClient, count: int, timeout: float = 120) -> None:
    """Wait until visibility lists all of them (it lags the terminations a little)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        stats = (await api.get("/admin/dlq", params={"limit": 1}, headers=ADMIN)).json()
        if stats["items"]:
            last_kind_page = (
                await api.get("/admin/dlq", params={"type": "cleanup", "limit": 500}, headers=ADMIN)
            ).json()
            if last_kind_page["items"]:
                return
        await asyncio.sleep(1)


async def main(count: int, out: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(TEMPORAL_BIN),
            dev_server_database_filename=str(Path(tmp) / "dlq.db"),
            dev_server_extra_args=tuned_args(persistent=True),
        )
        try:
            settings = Settings(
                temporal_address=env.client.service_client.config.target_host,
                api_keys=["bench"],
                admin_token="bench-admin",
                data_dir=Path(tmp),
                encryption_key=base64.b64encode(secrets.token_bytes(32)).decode(),
            )
            # Through the API's converter: the memo the DLQ reads is encrypted, as in production.
            fill_s = await fill(client_for(env.client, settings), count)
            transport = httpx.ASGITransport(app=create_app(settings))
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as api:
                await visible(api, count)
                figures = {
                    "first_page_50": await timed(api, "GET", "/admin/dlq", 20, params={"limit": 50}),
                    "first_page_500": await timed(api, "GET", "/admin/dlq", 5, params={"limit": 500}),
                    "one_type_page_50": await timed(api, "GET", "/admin/dlq", 20, params={"type": "sms", "limit": 50}),
                }
                # A page 20 pages in (1,000 entries deep), reached by following cursors.
                cursor = None
                for _ in range(20):
                    page = (
                        await api.get(
                            "/admin/dlq", params={"limit": 50} | ({"cursor": cursor} if cursor else {}), headers=ADMIN
                        )
                    ).json()
                    cursor = page["nextCursor"]
                figures["page_21_by_cursor"] = await timed(
                    api, "GET", "/admin/dlq", 10, params={"limit": 50, "cursor": cursor}
                )
                victim = figures["first_page_50"]["body"]["items"][0]["jobId"]
                figures["redrive_one"] = await timed(api, "POST", f"/admin/dlq/{victim}/retry", 1)
        finally:
            await env.shutdown()
    result = {
        "dead_letters": count,
        "fill_seconds": round(fill_s, 1),
        **{
            name: {k: v for k, v in f.items() if k != "body"} | {"items": len(f["body"].get("items", []))}
            for name, f in figures.items()
        },
    }
    return write_figures(out, result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dead-letters", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path(".data/bench-dlq.json"))
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.dead_letters, args.out)), indent=2))
    exit_skipping_teardown(0)
