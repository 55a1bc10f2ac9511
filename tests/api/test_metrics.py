"""GET /metrics (open, Prometheus text) and the one JSON log line per stage of a job."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.logs import JsonFormatter
from tests.api.helpers import until_final
from tests.support.http_receiver import Answer
from tests.support.logs import on_the_root_logger
from tests.support.processes import fetch_when_served, start_module
from tests.support.temporal import free_port


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, its labels) → value, from a Prometheus text page."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(page: dict, name: str, **labels: str) -> float:
    """The sum over every series of `name` that has these labels (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in page.items() if n == name and wanted <= got)


async def scrape(client) -> dict:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every log line of the process, as Herald writes them (common.logs.JsonFormatter)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    with on_the_root_logger(handler, logging.INFO):
        yield out


def parsed(out: io.StringIO) -> list[dict]:
    lines = out.getvalue().splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # every line is one JSON object


async def test_metrics_is_open_and_counts_accepted_jobs_by_type(api, anon):
    before = await scrape(anon)
    response = await api.post("/jobs/email", json={"to": "ada@example.com", "subject": "metrics", "body": "b"})
    assert response.status_code == 202, response.text
    after = await scrape(anon)
    accepted = lambda page, t: value(page, "herald_jobs_accepted_total", type=t)  # noqa: E731
    assert accepted(after, "email") == accepted(before, "email") + 1
    assert accepted(after, "sms") == accepted(before, "sms")
    await until_final(api, response.json()["jobId"])


async def test_request_latency_is_labelled_by_route_template_not_path(api, anon):
    job_id = (await api.post("/jobs/sms", json={"phone": "+14155550100", "message": "hi"})).json()["jobId"]
    await api.get(f"/jobs/{job_id}/status")
    await anon.get(f"/jobs/{job_id}/status")  # 401
    await anon.get("/no/such/route")
    page = await scrape(anon)
    name = "herald_http_request_duration_seconds_count"
    assert value(page, name, method="POST", route="/jobs/sms", status="202") >= 1
    assert value(page, name, method="GET", route="/jobs/{job_id}/status", status="200") >= 1
    assert value(page, name, method="GET", route="/jobs/{job_id}/status", status="401") >= 1
    assert value(page, name, method="GET", route="unmatched", status="404") >= 1
    assert value(page, "herald_http_request_duration_seconds_bucket", route="/jobs/sms", le="+Inf") >= 1
    labels = {dict(got).get("route") for (n, got) in page if n == name}
    assert not any(job_id in (route or "") for route in labels), labels
    assert all(route == "unmatched" or route.startswith("/") for route in labels), labels


async def test_one_json_line_per_stage_of_a_job(api, json_lines):
    response = await api.post("/jobs/email", json={"to": "ada@example.com", "subject": "stages", "body": "b"})
    job_id = response.json()["jobId"]
    assert (await until_final(api, job_id))["status"] == "completed"
    lines = parsed(json_lines)
    for line in lines:
        assert {"ts", "level", "logger"} <= set(line) and ("event" in line or "message" in line), line
    stages = [line for line in lines if line.get("job_id") == job_id]
    assert [line["event"] for line in stages] == [
        "job.added",
        "attempt.picked",
        "attempt.succeeded",
        "job.completed",
    ], stages
    added, picked, succeeded, completed = stages
    assert added["kind"] == "email" and added["family"] == "jobs" and added["phase"] == "queued"
    assert picked["attempt"] == succeeded["attempt"] == 1
    assert completed["kind"] == "email"
    assert all(line["level"] == "INFO" for line in stages)


async def test_a_failed_attempt_and_a_failed_job_are_logged_too(api, sms_gateway, json_lines):
    phone = "+14155550166"
    sms_gateway.script(phone, [Answer(400, {"error": "bad number"})])  # final: no retry
    response = await api.post("/jobs/sms", json={"phone": phone, "message": "hi"})
    job_id = response.json()["jobId"]
    assert (await until_final(api, job_id))["status"] == "failed"
    events = [line["event"] for line in parsed(json_lines) if line.get("job_id") == job_id]
    assert events[:4] == ["job.added", "attempt.picked", "attempt.failed", "job.failed"], events


def test_the_api_process_logs_json_lines_uvicorns_included(tmp_path):
    """`python -m api` as deployed: uvicorn's start-up and access lines are JSON objects like Herald's."""
    port = free_port()
    env = {
        **os.environ,
        "HERALD_DEV_MODE": "true",
        "HERALD_API_PORT": str(port),
        "HERALD_API_HOST": "127.0.0.1",
        "HERALD_DATA_DIR": str(tmp_path),
        "HERALD_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    server = start_module("api", env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        page = fetch_when_served(f"http://127.0.0.1:{port}/metrics", server, "the API")
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert "# TYPE herald_jobs_accepted_total counter" in page
    lines = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    said = [(line["logger"], line.get("message", "")) for line in lines]
    assert ("uvicorn.error", "Application startup complete.") in said, said
    assert any(name == "uvicorn.access" and '"GET /metrics HTTP/1.1" 200' in message for name, message in said), said
