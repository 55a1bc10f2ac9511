"""Herald's log lines: one JSON object per line, events with their fields, secrets masked."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from common import logs
from common.logs import JsonFormatter, log_event, redact, redact_secrets_of, secret_values
from common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def lines():
    """A logger `t` whose lines go through JsonFormatter into a buffer; parsed on call."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("t")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log, lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    log.removeHandler(handler)


@pytest.fixture
def no_secrets(monkeypatch):
    monkeypatch.setattr(logs, "_secrets", set())
    monkeypatch.setattr(logs, "_masked", ())


class WorkflowStyleAdapter(logging.LoggerAdapter):
    """Like the SDK's workflow.logger: merges `extra` and appends the workflow's details to the message."""

    def process(self, msg, kwargs):
        kwargs["extra"] = {"temporal_workflow": {"workflow_id": "w-1"}, **(kwargs.get("extra") or {})}
        return f"{msg} ({{'workflow_id': 'w-1'}})", kwargs


def test_an_event_is_one_json_object_with_time_level_logger_and_its_fields(lines):
    log, parsed = lines
    log_event("job.added", log=log, job_id="email-1", kind="email", priority=None)
    [line] = parsed()
    assert list(line)[:4] == ["ts", "level", "logger", "event"]
    assert line["level"] == "INFO" and line["logger"] == "t" and line["event"] == "job.added"
    assert line["job_id"] == "email-1" and line["kind"] == "email" and line["priority"] is None
    assert line["ts"].endswith("+00:00") and "message" not in line


def test_an_event_through_the_workflow_logger_stays_clean_json(lines):
    log, parsed = lines
    log_event("job.completed", log=WorkflowStyleAdapter(log, {}), job_id="email-1", attempts=1)
    [line] = parsed()
    assert line["event"] == "job.completed" and line["job_id"] == "email-1" and line["attempts"] == 1
    assert "message" not in line


def test_other_lines_are_json_with_a_message_and_any_traceback(lines):
    log, parsed = lines
    log.warning("Temporal at %s not reachable yet", "localhost:7233")
    WorkflowStyleAdapter(log, {}).info("Evicting workflow")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it broke")
    plain, workflow, broken = parsed()
    assert plain["message"] == "Temporal at localhost:7233 not reachable yet" and plain["level"] == "WARNING"
    assert workflow["message"].startswith("Evicting workflow") and workflow["workflow"] == {"workflow_id": "w-1"}
    assert broken["level"] == "ERROR" and "ValueError: boom" in broken["exc"]


def test_values_that_are_not_json_are_written_as_text(lines):
    log, parsed = lines
    log_event("x", log=log, path=Path("/tmp/a"), when=__import__("datetime").date(2030, 1, 2))
    [line] = parsed()
    assert line["path"] == "/tmp/a" and line["when"] == "2030-01-02"


def test_every_secret_setting_is_found(no_secrets):
    settings = Settings(
        api_keys=["client-key-1", "client-key-2"],
        admin_token="admin-token-1",
        smtp_password="smtp-password-1",
        sms_gateway_token="sms-token-1",
        sms_fallback_token="sms-fallback-1",
        webhook_secret="whsec_bmV3LXNlY3JldA== whsec_b2xkLXNlY3JldA==",
    )
    found = secret_values(settings)
    assert {
        "client-key-1",
        "client-key-2",
        "admin-token-1",
        "smtp-password-1",
        "sms-token-1",
        "sms-fallback-1",
        "whsec_bmV3LXNlY3JldA==",
        "bmV3LXNlY3JldA==",
        "whsec_b2xkLXNlY3JldA==",
    } <= found
    # Nothing that is not a secret (hosts, ports, paths, the From address).
    assert "127.0.0.1" not in found and "Herald <herald@localhost>" not in found


def test_a_secret_that_reaches_a_line_is_masked(lines, no_secrets):
    log, parsed = lines
    redact_secrets_of(Settings(api_keys=["client-key-1"], smtp_password='pa"ss\\word'))
    log.error("refused Bearer client-key-1")
    log_event("attempt.failed", log=log, error='login with pa"ss\\word failed')
    refused, failed = parsed()
    assert refused["message"] == "refused Bearer [redacted]"
    assert failed["error"] == "login with [redacted] failed"
    assert redact("short") == "short"


def test_configure_logging_makes_every_line_of_a_process_json():
    """A fresh process, as `python -m worker` / `python -m api` set it up: Herald's, uvicorn's and
    the SDK's loggers all write JSON lines on stderr; stdout stays free."""
    script = (
        "import logging\n"
        "from common.logs import configure_logging, log_event\n"
        "configure_logging()\n"
        "log_event('job.added', job_id='email-1')\n"
        "logging.getLogger('uvicorn.error').info('Application startup complete.')\n"
        "logging.getLogger('temporalio.worker._worker').warning('Beginning worker shutdown')\n"
        "logging.getLogger('httpx').info('HTTP Request: POST https://hooks.example/x?token=t')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["logger"], line.get("event") or line["message"]) for line in lines] == [
        ("herald", "job.added"),
        ("uvicorn.error", "Application startup complete."),
        ("temporalio.worker._worker", "Beginning worker shutdown"),
    ]
