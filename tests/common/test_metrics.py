"""The metric names and labels Herald's two endpoints expose, and how the worker's is configured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from activities.digests import JOIN_DIGEST, LEAVE_DIGEST
from activities.preferences import CHECK_PREFERENCES
from activities.sms_quota import TAKE_SMS_SLOT
from common import metrics
from common.metrics import ATTEMPTS, DEAD_LETTERS, DESCRIPTIONS, JOBS_FINISHED, attempt_type
from common.models import TASK_QUEUES
from common.settings import Settings
from common.temporal import metrics_address, telemetry
from worker import activities_by_queue

ROOT = Path(__file__).resolve().parents[2]


def test_the_exposed_names():
    assert (metrics.JOBS_ACCEPTED, metrics.HTTP_REQUEST_DURATION) == (
        "herald_jobs_accepted_total",
        "herald_http_request_duration_seconds",
    )
    assert (ATTEMPTS, JOBS_FINISHED, DEAD_LETTERS) == (
        "herald_attempts_total",
        "herald_jobs_finished_total",
        "herald_dead_letters_total",
    )
    assert all(DESCRIPTIONS[name] for name in (ATTEMPTS, JOBS_FINISHED, DEAD_LETTERS))


def test_every_send_activity_maps_to_its_job_type(tmp_path):
    settings = Settings(data_dir=tmp_path, webhook_secret="whsec_dGVzdA==")
    for queue, activities in activities_by_queue(settings).items():
        for fn in activities:
            name = fn.__temporal_activity_definition.name
            if name in (TAKE_SMS_SLOT, CHECK_PREFERENCES, JOIN_DIGEST, LEAVE_DIGEST):
                continue  # not a send: it counts no attempt
            assert attempt_type(name) in TASK_QUEUES, name
            assert TASK_QUEUES[attempt_type(name)] == queue, name
    assert attempt_type("deliver_webhook", "NotificationWorkflow") == "webhook"
    assert attempt_type("deliver_webhook", "CallbackWorkflow") == "callback"


def test_the_worker_metrics_address():
    assert Settings().worker_metrics_port == 9464
    assert metrics_address(Settings()) == "127.0.0.1:9464"
    assert metrics_address(Settings(worker_metrics_host="0.0.0.0", worker_metrics_port=9100)) == "0.0.0.0:9100"
    assert metrics_address(Settings(worker_metrics_host="::", worker_metrics_port=9100)) == "[::]:9100"
    assert metrics_address(Settings(worker_metrics_port=0)) is None


def test_port_zero_serves_no_metrics_and_the_sdk_logs_go_to_python_logging():
    off = telemetry(None)
    assert off.metrics is None
    assert off.logging.forwarding.logger.name == "temporalio.core"
    on = telemetry("127.0.0.1:9464")
    assert on.metrics.bind_address == "127.0.0.1:9464"
    # Names as created: Herald's counters already end in _total, the SDK's keep Temporal's names.
    assert on.metrics.counters_total_suffix is False and on.metrics.unit_suffix is False


def test_workflow_code_can_import_the_names_without_prometheus_client():
    # Workflow code imports common.metrics for the names and the replay-safe helpers.
    script = "import sys, common.metrics; assert 'prometheus_client' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
