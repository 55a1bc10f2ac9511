"""The one place where Herald's internal phases, and the ends of runs, become each client family's status words."""

from __future__ import annotations

from collections.abc import Mapping

from temporalio.client import WorkflowExecutionStatus

from common.models import Phase

# GET /jobs/{id}/status
JOB_STATUS = {p: p.value for p in Phase}
# GET /jobs/{id}: BullMQ's words
BULLMQ_STATUS = {
    Phase.QUEUED: "waiting",
    Phase.DELAYED: "delayed",
    Phase.PROCESSING: "active",
    Phase.COMPLETED: "completed",
    Phase.FAILED: "failed",
    Phase.CANCELLED: "cancelled",
    Phase.SUPPRESSED: "suppressed",
}
# GET /notifications/{id}: no word for "delayed", so a waiting notification is "queued"
NOTIFICATION_STATUS = {
    Phase.QUEUED: "queued",
    Phase.DELAYED: "queued",
    Phase.PROCESSING: "processing",
    Phase.COMPLETED: "success",
    Phase.FAILED: "failed",
    Phase.CANCELLED: "cancelled",
    Phase.SUPPRESSED: "suppressed",
}


# A run Temporal ended without the job recording its end (an operator's terminate, a run timeout): the job
# counts as failed, for this reason, on every status route, in the DLQ, the stats and reports.
FAILED_BY_ENDING: dict[WorkflowExecutionStatus, str] = {
    WorkflowExecutionStatus.TERMINATED: "terminated by an operator",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
}
# The same ends as visibility's ExecutionStatus names them (in its queries and answers).
FAILED_BY_ENDING_NAMES: tuple[str, ...] = ("Terminated", "TimedOut")


def words(table: Mapping[Phase, str]) -> tuple[str, ...]:
    """A table's words, each once, in the phases' order: what its answers' schema lists."""
    return tuple(dict.fromkeys(table[phase] for phase in Phase))


def family_status(family: str, phase: Phase) -> str:
    """Status in the words of the routes that created the job (used by result callbacks)."""
    return (NOTIFICATION_STATUS if family == "notify" else BULLMQ_STATUS)[Phase(phase)]


def notification_counts(phases: Mapping[str, int]) -> dict[str, int]:
    """Items counted by Phase value, in GET /notifications' words: a batch's counts."""
    counts = dict.fromkeys(words(NOTIFICATION_STATUS), 0)
    for phase, n in phases.items():
        counts[NOTIFICATION_STATUS[Phase(phase)]] += int(n)
    return counts
