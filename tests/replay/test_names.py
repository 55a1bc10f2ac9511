"""Pinned names: every workflow, signal, query, update and activity name Herald registers.

Histories refer to these by name, not by Python object: a running job's history says
"NotificationWorkflow", "attempt_finished", "send_email", and its pending tasks sit on named task
queues. Renaming a class, a method or a queue (where no `name=` pins it) strands every run
already in flight, so a rename must fail here first. These are the *effective* names, whether
they come from `name=` or from the Python identifier.
"""

from __future__ import annotations

from temporalio import activity, workflow

from common.settings import Settings
from worker import WORKFLOWS, activities_by_queue

# Every job workflow (TrackedJobWorkflow): its signals and its state query.
TRACKED_JOB = {
    "signals": {"attempt_finished", "release", "release_wait", "preferences_changed", "digest_joined", "digest_sent"},
    "queries": {"state"},
    "updates": set(),
}
PINNED_WORKFLOWS = {
    "NotificationWorkflow": TRACKED_JOB,
    "CleanupWorkflow": TRACKED_JOB,
    "CallbackWorkflow": {"signals": {"attempt_finished"}, "queries": set(), "updates": set()},
    "ReportWorkflow": TRACKED_JOB,
    "BatchWorkflow": {"signals": {"batch_go"}, "queries": {"batch_item", "batch_counts"}, "updates": {"batch_cancel"}},
    "ChunkedBatchWorkflow": {"signals": {"chunk_done"}, "queries": set(), "updates": set()},
    "UserWorkflow": {"signals": {"job_waiting"}, "queries": {"profile"}, "updates": {"put"}},
    "DigestWorkflow": {"signals": {"join", "leave", "send_now"}, "queries": {"digest"}, "updates": {"take_out"}},
    "SmsQuotaWorkflow": {"signals": set(), "queries": {"used"}, "updates": {"reserve", "release"}},
    "IdempotencyKeyWorkflow": {"signals": {"complete"}, "queries": set(), "updates": {"claim"}},
}

PINNED_ACTIVITIES_BY_QUEUE = {
    "herald-email": {
        "send_email",
        "send_email_slice",
        "send_typed_email",
        "check_preferences",
        "join_digest",
        "leave_digest",
        "send_digest",
    },
    "herald-sms": {"send_sms", "send_sms_slice", "take_sms_slot", "check_preferences"},
    "herald-webhook": {"deliver_webhook", "deliver_webhook_slice"},
    "herald-maintenance": {"run_cleanup", "build_report"},
}


def handler_names(handlers: dict) -> set[str]:
    return {"<dynamic>" if name is None else name for name in handlers}


def test_workflow_signal_query_and_update_names_are_unchanged():
    registered = {}
    for cls in WORKFLOWS:
        defn = workflow._Definition.from_class(cls)
        assert defn is not None, f"{cls.__name__} is not a @workflow.defn"
        registered[defn.name] = {
            "signals": handler_names(defn.signals),
            "queries": handler_names(defn.queries),
            "updates": handler_names(defn.updates),
        }
    assert registered == PINNED_WORKFLOWS


def test_activity_names_and_their_task_queues_are_unchanged():
    registered = {
        queue: {activity._Definition.must_from_callable(fn).name for fn in fns}
        for queue, fns in activities_by_queue(Settings(webhook_secret="whsec_dGVzdA==")).items()
    }
    assert registered == PINNED_ACTIVITIES_BY_QUEUE
