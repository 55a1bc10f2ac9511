"""The rule that maps a running job's pending send activity to its status (api/jobs/service.py): a
send scheduled and not yet started, waiting in its task queue (for the channel's rate limit, or a free
worker), is `queued`; one a worker runs is `processing`; one waiting out a retry backoff is `delayed`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionResponse
from temporalio.client import WorkflowExecutionStatus

from api.jobs.service import _view
from common.vocabulary import BULLMQ_STATUS, JOB_STATUS, NOTIFICATION_STATUS

SCHEDULED = PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
STARTED = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED


def running(pending: PendingActivityInfo) -> SimpleNamespace:
    raw = DescribeWorkflowExecutionResponse(pending_activities=[pending])
    return SimpleNamespace(status=WorkflowExecutionStatus.RUNNING, raw_description=raw)


def state(**changes) -> dict:
    return {"phase": "processing", "attempts": 0, **changes}


@pytest.mark.parametrize(
    ("pending", "words", "attempts"),
    [
        (PendingActivityInfo(state=SCHEDULED, attempt=1), ("queued", "waiting", "queued"), 0),
        (PendingActivityInfo(state=STARTED, attempt=1), ("processing", "active", "processing"), 1),
    ],
    ids=["waiting-in-the-queue", "running"],
)
def test_a_pending_send_reads_queued_until_a_worker_has_it(pending, words, attempts):
    view = _view("email-1", state(), running(pending), None)
    assert (JOB_STATUS[view.phase], BULLMQ_STATUS[view.phase], NOTIFICATION_STATUS[view.phase]) == words
    assert view.attempts == attempts and view.next_attempt_at is None


def test_a_send_waiting_out_a_backoff_reads_delayed():
    at = Timestamp()
    at.FromDatetime(datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=30))
    pending = PendingActivityInfo(state=SCHEDULED, attempt=2, next_attempt_schedule_time=at)
    deliveries = [{"attempt": 1, "succeeded": False}]
    view = _view("email-1", state(deliveries=deliveries), running(pending), "SMTP server answered 451")
    assert (view.phase.value, view.attempts, view.error) == ("delayed", 1, "SMTP server answered 451")
    assert view.next_attempt_at
