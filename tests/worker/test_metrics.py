"""The worker's Prometheus endpoint (the Temporal SDK's metrics and Herald's), and secrets kept out
of the logs, with real workers on a runtime like `python -m worker` makes (common.temporal.worker_runtime),
jobs taken in by the real API, a real SMTP sink and local HTTP receivers.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import httpx
import pytest

from api.main import create_app
from common.logs import JsonFormatter
from common.metrics import ATTEMPTS, DEAD_LETTERS, JOBS_FINISHED
from common.settings import Settings
from common.temporal import connect, worker_runtime
from common.tenants import bare_key_tenant
from devstack.smtp_sink import SmtpSink
from tests.api.helpers import FINAL, address_of, api_client, poll
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.logs import on_the_root_logger
from tests.support.processes import fetch_when_served, start_module
from tests.support.temporal import free_port, local_settings, running_workers

# Every secret a deployment has, each one distinct, so any of them in a log line is found.
API_KEY = "key-4f1c2a9e7b3d"
ADMIN_TOKEN = "admin-8e2b6c0d4a1f"
SMTP_PASSWORD = "smtp-pw-5d7e9a1c3b"
SMS_TOKEN = "sms-token-2b4d6f8a0c"
SMS_FALLBACK_TOKEN = "sms-fallback-9c7a5e3b1d"
WEBHOOK_SECRET = "whsec_c2VjcmV0LWZvci1sb2ctdGVzdHMtb25seS0xMjM0NTY="
ENCRYPTION_KEY = "bG9nLXRlc3RzLXBheWxvYWQta2V5LTMyLWJ5dGVzISE="
SECRETS = [
    API_KEY,
    ADMIN_TOKEN,
    SMTP_PASSWORD,
    SMS_TOKEN,
    SMS_FALLBACK_TOKEN,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET.removeprefix("whsec_"),
    ENCRYPTION_KEY,
]


class Captured(logging.Handler):
    """Every record as it was logged (before any masking) and as Herald writes it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.raw: list[str] = []
        self.json = io.StringIO()
        self.formatter_ = JsonFormatter()
        self.plain = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "herald_event", None)
        self.raw.append(
            self.plain.format(record)
            + (json.dumps(event, default=str) if event else "")
            + " "
            + json.dumps({k: str(v) for k, v in record.__dict__.items()})
        )
        self.json.write(self.formatter_.format(record) + "\n")

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.json.getvalue().splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    with on_the_root_logger(Captured(), logging.DEBUG) as handler:
        yield handler


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """(name, labels) → value of every sample, names exactly as exposed (no parser renaming them)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    page = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, line
            name, labels, number = match.groups()
            page[(name, frozenset(LABEL.findall(labels or "")))] = float(number)
    return page


def value(page: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, got), v in page.items() if n == name and wanted <= got)


async def until_final(api: httpx.AsyncClient, job_id: str) -> dict:
    return await poll(api, f"/jobs/{job_id}/status", lambda body: body["status"] in FINAL, deadline_s=30)


async def test_worker_endpoint_serves_sdk_and_herald_metrics_and_logs_keep_secrets_out(time_env, tmp_path, captured):
    port = free_port()
    with (
        SmtpSink(tmp_path / "outbox", port=free_port()) as smtp,
        HttpReceiver([Answer(503, {"error": "busy"})]) as gateway,
        HttpReceiver([Answer(204)]) as receiver,
    ):
        settings = local_settings(
            tmp_path,
            temporal_address=address_of(time_env),
            api_keys=[API_KEY],
            admin_token=ADMIN_TOKEN,
            smtp_port=smtp.port,
            smtp_password=SMTP_PASSWORD,
            sms_gateway_url=gateway.url + "/messages",
            sms_gateway_token=SMS_TOKEN,
            sms_fallback_token=SMS_FALLBACK_TOKEN,
            # This module's own secrets, each distinct (SECRETS), in place of the tests' shared ones.
            webhook_secret=WEBHOOK_SECRET,
            encryption_key=ENCRYPTION_KEY,
            worker_metrics_port=port,
        )
        client = await connect(settings, runtime=worker_runtime(settings))
        async with (
            running_workers(client, settings),
            api_client(create_app(settings), headers={"Authorization": f"Bearer {API_KEY}"}) as api,
        ):
            sent = (await api.post("/jobs/email", json={"to": "ada@example.com", "subject": "s", "body": "b"})).json()
            failing = (
                await api.post("/jobs/sms", json={"phone": "+14155550100", "message": "m", "attempts": 1})
            ).json()
            hooked = (await api.post("/notify/webhook", json={"url": receiver.url + "/hook", "data": {"n": 1}})).json()
            # A user who opted out of email: the job ends suppressed (counted apart, not failed).
            assert (
                await api.put("/users/metrics-user", json={"email": "ada@example.com", "channels": {"email": False}})
            ).status_code == 200
            opted_out = (
                await api.post(
                    "/notify/email",
                    json={"to": "ada@example.com", "subject": "s", "body": "b", "userId": "metrics-user"},
                )
            ).json()
            assert (await until_final(api, sent["jobId"]))["status"] == "completed"
            assert (await until_final(api, failing["jobId"]))["status"] == "failed"
            assert (await until_final(api, hooked["notificationId"]))["status"] == "completed"
            assert (await until_final(api, opted_out["notificationId"]))["status"] == "suppressed"
            # A wrong key and the admin token where a client key belongs: refused, and not logged.
            await api.get(f"/jobs/{sent['jobId']}/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            await api.get("/jobs/x/status", headers={"Authorization": f"Bearer {API_KEY}x"})
            page = scrape(port)
        assert receiver.received and gateway.received  # the secrets were used: signed, sent as a token

    assert value(page, ATTEMPTS, type="email", outcome="succeeded") >= 1
    assert value(page, ATTEMPTS, type="sms", outcome="failed") >= 1
    assert value(page, ATTEMPTS, type="webhook", outcome="succeeded") >= 1
    assert value(page, ATTEMPTS, type="email", outcome="failed") == 0
    # The attempts too carry the job's tenant (the run's, passed to its activities in a header), first
    # attempts (local activities) and later ones (the SMS's retries) alike.
    assert value(page, ATTEMPTS, type="email", outcome="succeeded", tenant=bare_key_tenant(API_KEY)) >= 1
    assert value(page, ATTEMPTS, type="sms", outcome="failed", tenant=bare_key_tenant(API_KEY)) >= 1
    assert value(page, ATTEMPTS, type="webhook", tenant="other") == 0
    assert value(page, JOBS_FINISHED, type="email", status="completed") >= 1
    # Labelled by the job's tenant (its HeraldTenant), one the worker's HERALD_API_KEYS names.
    assert value(page, JOBS_FINISHED, type="email", status="completed", tenant=bare_key_tenant(API_KEY)) >= 1
    assert value(page, JOBS_FINISHED, type="sms", status="failed") >= 1
    assert value(page, JOBS_FINISHED, type="email", status="suppressed") >= 1
    assert value(page, DEAD_LETTERS, type="sms") >= 1
    assert value(page, DEAD_LETTERS, type="email") == 0
    # The SDK's own metrics on the same endpoint.
    sdk = {name for name, _ in page if name.startswith("temporal_")}
    assert {
        "temporal_workflow_completed",
        "temporal_workflow_failed",
        "temporal_workflow_task_execution_latency_count",
        "temporal_local_activity_execution_failed",
    } <= sdk, sorted(sdk)
    # Exposed under exactly its name: the runtime adds no second `_total`.
    assert not any(name.startswith(ATTEMPTS + "_") for name, _ in page)

    lines = captured.lines()
    assert {line["event"] for line in lines if line.get("job_id") == sent["jobId"]} >= {
        "job.added",
        "attempt.picked",
        "attempt.succeeded",
        "job.completed",
    }
    assert {line["event"] for line in lines if line.get("job_id") == failing["jobId"]} >= {
        "job.added",
        "attempt.picked",
        "attempt.failed",
        "job.failed",
        "dead_lettered",
    }
    everything = "\n".join(captured.raw) + captured.json.getvalue()
    leaked = [secret for secret in SECRETS if secret in everything]
    assert not leaked, f"secrets in the logs: {leaked}"


async def test_each_configured_tenant_is_labelled_with_its_own_jobs(time_env, tmp_path):
    """Two tenants of HERALD_API_KEYS: each one's jobs and attempts carry its own name, and only the
    tenant whose job failed has a dead letter counted."""
    port = free_port()
    keys = {"acme": "key-a-7c1e", "globex": "key-g-3f9b"}
    email = {"to": "ada@example.com", "subject": "s", "body": "b"}
    failing_sms = {"phone": "+14155550100", "message": "m", "attempts": 1}
    with (
        SmtpSink(tmp_path / "outbox", port=free_port()) as smtp,
        HttpReceiver([Answer(400, {"error": "bad number"})]) as gateway,
    ):
        settings = local_settings(
            tmp_path,
            temporal_address=address_of(time_env),
            api_keys=[f"{tenant}={key}" for tenant, key in keys.items()],
            smtp_port=smtp.port,
            sms_gateway_url=gateway.url + "/messages",
            worker_metrics_port=port,
        )
        client = await connect(settings, runtime=worker_runtime(settings))
        app = create_app(settings)
        async with running_workers(client, settings):
            finals: dict[tuple[str, str], str] = {}
            # Each tenant's email is sent; globex's SMS is refused by the gateway (a 400 is final): failed.
            jobs = [
                ("acme", "/jobs/email", email),
                ("globex", "/jobs/email", email),
                ("globex", "/jobs/sms", failing_sms),
            ]
            for tenant, path, body in jobs:
                async with api_client(app, headers={"Authorization": f"Bearer {keys[tenant]}"}) as api:
                    response = await api.post(path, json=body)
                    assert response.status_code == 202, response.text
                    finals[(tenant, path)] = (await until_final(api, response.json()["jobId"]))["status"]
            assert finals == {
                ("acme", "/jobs/email"): "completed",
                ("globex", "/jobs/email"): "completed",
                ("globex", "/jobs/sms"): "failed",
            }
            page = scrape(port)

    for tenant in keys:
        assert value(page, JOBS_FINISHED, type="email", status="completed", tenant=tenant) == 1
        assert value(page, ATTEMPTS, type="email", outcome="succeeded", tenant=tenant) == 1
    assert value(page, JOBS_FINISHED, type="sms", status="failed", tenant="globex") == 1
    assert value(page, JOBS_FINISHED, type="sms", tenant="acme") == 0
    assert value(page, ATTEMPTS, type="sms", outcome="failed", tenant="globex") == 1
    assert value(page, ATTEMPTS, type="sms", tenant="acme") == 0
    assert value(page, DEAD_LETTERS, tenant="globex") == 1
    assert value(page, DEAD_LETTERS, tenant="acme") == 0
    # Every sample names one of the two: none fell back to the label of an unconfigured tenant.
    for name in (JOBS_FINISHED, ATTEMPTS, DEAD_LETTERS):
        assert {dict(labels)["tenant"] for (n, labels) in page if n == name} <= set(keys), name


def test_a_taken_metrics_port_is_logged_and_the_worker_runs_without_it(captured):
    with HttpReceiver() as taken:  # something already listens there
        port = int(taken.url.rsplit(":", 1)[1])
        runtime = worker_runtime(Settings(worker_metrics_port=port))
    assert runtime is not None
    [error] = [line for line in captured.lines() if line["level"] == "ERROR"]
    assert error["logger"] == "herald.temporal" and f"127.0.0.1:{port}" in error["message"]


def test_the_worker_process_serves_its_endpoint_and_logs_json_lines(tmp_path):
    """`python -m worker` as deployed: the endpoint is up on HERALD_WORKER_METRICS_PORT while the
    worker waits for Temporal, and every line it writes on stderr is a JSON object."""
    port = free_port()
    env = {
        **os.environ,
        "HERALD_WORKER_METRICS_PORT": str(port),
        "HERALD_DATA_DIR": str(tmp_path),
        "HERALD_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # nothing there: it waits and says so
        "HERALD_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "HERALD_ENCRYPTION_KEY": ENCRYPTION_KEY,
    }
    worker = start_module("worker", env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        fetch_when_served(f"http://127.0.0.1:{port}/metrics", worker, "the worker")
        time.sleep(1.5)  # at least one "not reachable yet"
    finally:
        worker.terminate()
        out, err = worker.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    assert out == ""
    said = [(line["logger"], line["level"], line.get("message", "")) for line in lines]
    assert ("herald.temporal", "INFO", f"worker metrics on http://127.0.0.1:{port}/metrics") in said, said
    assert any(
        name == "herald.temporal" and level == "WARNING" and "not reachable yet" in message
        for name, level, message in said
    ), said
    assert WEBHOOK_SECRET not in err
