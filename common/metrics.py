"""Herald's Prometheus metrics: their names, and the worker side of them.

Two endpoints:
- the API's `GET /metrics` (api/core/metrics.py, prometheus-client): `herald_jobs_accepted_total{type,tenant}`
  and `herald_http_request_duration_seconds{method,route,status}`;
- the worker's, on HERALD_WORKER_METRICS_HOST:HERALD_WORKER_METRICS_PORT, served by the Temporal
  runtime itself (common/temporal.worker_runtime): the SDK's own metrics (`temporal_…`) and
  Herald's, which go through the SDK's meter so they land on that same endpoint:
  `herald_attempts_total{type,outcome,tenant}` (activities/attempt_log.py; the tenant comes with the
  activity's `herald-tenant` header, activities/tenant_header.py),
  `herald_jobs_finished_total{type,status,tenant}` and `herald_dead_letters_total{type,tenant}` (the workflows,
  through `workflow.metric_meter()`, which records nothing while a workflow replays).

The runtime exports a counter under exactly the name it was created with (no `_total` is added:
`PrometheusConfig(counters_total_suffix=False)`), so the names below are the exposed names. The
SDK's meters add `namespace`, `task_queue` and `activity_type` / `workflow_type` labels, and the
runtime a `service_name` label, to Herald's.

This module imports no I/O: workflow code imports it for the names and helpers.
"""

from __future__ import annotations

import contextvars
import logging

from temporalio import activity, workflow

from common.tenants import TENANT_KEY, metric_label

log = logging.getLogger("herald.metrics")
# The worker's configured tenants (configure_tenant_labels); read by workflow code, which may: a label
# records nothing during replay and decides nothing.
_tenants: frozenset[str] = frozenset()
# The tenant of the activity running in this task (None: its run recorded none), from its header.
activity_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("herald_tenant", default=None)

# ---- the API (api/core/metrics.py) ------------------------------------------------------------------
JOBS_ACCEPTED = "herald_jobs_accepted_total"
HTTP_REQUEST_DURATION = "herald_http_request_duration_seconds"
LIVE_JOBS = "herald_live_watched_jobs"
LIVE_VIEWERS = "herald_live_viewers"

# ---- the worker (through the Temporal SDK's meter) ---------------------------------------------
ATTEMPTS = "herald_attempts_total"
JOBS_FINISHED = "herald_jobs_finished_total"
DEAD_LETTERS = "herald_dead_letters_total"

DESCRIPTIONS = {
    JOBS_ACCEPTED: "Jobs the API accepted (answered 202 after Temporal durably started them), by type and tenant",
    HTTP_REQUEST_DURATION: "Time the API took to answer a request, by method, route template and status",
    LIVE_JOBS: "Jobs this API process watches for live status (one Temporal history long poll each)",
    LIVE_VIEWERS: "Open SSE streams and waiting long polls of this API process",
    ATTEMPTS: "Send attempts a worker finished, by job type, outcome (succeeded, failed) and tenant",
    JOBS_FINISHED: (
        "Jobs that reached a final state, by type, status (completed, failed, cancelled, suppressed) and tenant"
    ),
    DEAD_LETTERS: "Jobs that were recorded in the dead-letter queue, by type and tenant",
}

# The job type an activity sends for (the `type` label), by activity type.
ACTIVITY_JOB_TYPES: dict[str, str] = {
    "send_email": "email",
    "send_typed_email": "email",
    # A digest's one email (activities/digests.py).
    "send_digest": "email",
    "send_sms": "sms",
    "deliver_webhook": "webhook",
    "run_cleanup": "cleanup",
    "build_report": "report",
    # A batch's slices (activities/batch.py): one attempt counted per item.
    "send_email_slice": "email",
    "send_sms_slice": "sms",
    "deliver_webhook_slice": "webhook",
}
# A job's result callback is a signed webhook too, but no job of its own: counted apart.
CALLBACK_WORKFLOW = "CallbackWorkflow"
CALLBACK_TYPE = "callback"

SUCCEEDED, FAILED = "succeeded", "failed"


def attempt_type(activity_type: str, workflow_type: str | None = None) -> str:
    """The `type` label of an attempt: the job type its activity sends for, or `callback`."""
    if workflow_type == CALLBACK_WORKFLOW:
        return CALLBACK_TYPE
    return ACTIVITY_JOB_TYPES.get(activity_type, activity_type)


def count_attempt(outcome: str) -> None:
    """From inside a send activity: one finished attempt, of the tenant of the run that scheduled it (set
    from the activity's header: activities/tenant_header.py). Never raises: a metric must not fail a send that
    went out (a retry would send it again)."""
    try:
        info = activity.info()
        activity.metric_meter().create_counter(ATTEMPTS, DESCRIPTIONS[ATTEMPTS]).add(
            1,
            {
                "type": attempt_type(info.activity_type, info.workflow_type),
                "outcome": outcome,
                "tenant": metric_label(activity_tenant.get(), _tenants),
            },
        )
    except Exception:
        log.warning("could not count an attempt", exc_info=True)


def configure_tenant_labels(tenants: list[str]) -> None:
    """The tenants the worker's `tenant` labels name (its HERALD_API_KEYS's; worker.py): any other, and a
    run that recorded none, is OTHER_TENANT, so the label stays bounded by the configuration."""
    global _tenants
    _tenants = frozenset(tenants)


def _workflow_tenant() -> str:
    # The run's HeraldTenant search attribute (set by the API at start: common/jobs.py), so no call
    # site has to pass the tenant along.
    return metric_label(workflow.info().typed_search_attributes.get(TENANT_KEY), _tenants)


def count_job_finished(job_type: str, status: str) -> None:
    """From inside a job's workflow, once, when it reaches its final state (`status`: completed,
    failed, cancelled or suppressed). Replay-safe: the workflow meter records nothing during replay."""
    workflow.metric_meter().create_counter(JOBS_FINISHED, DESCRIPTIONS[JOBS_FINISHED]).add(
        1, {"type": job_type, "status": status, "tenant": _workflow_tenant()}
    )


def count_dead_letter(job_type: str) -> None:
    """From inside a job's workflow, once, when the failed job is recorded in the DLQ."""
    workflow.metric_meter().create_counter(DEAD_LETTERS, DESCRIPTIONS[DEAD_LETTERS]).add(
        1, {"type": job_type, "tenant": _workflow_tenant()}
    )
