"""The names Temporal records in histories: Herald's workflow types and a failed job's failure type.

Recorded runs replay only under the same names (tests/replay/test_names.py pins them), so these
strings never change. Code that names a workflow without its class (common/ imports no workflow)
uses these constants, never a literal of its own.
"""

from __future__ import annotations

NOTIFICATION_WORKFLOW = "NotificationWorkflow"
CLEANUP_WORKFLOW = "CleanupWorkflow"
REPORT_WORKFLOW = "ReportWorkflow"
CALLBACK_WORKFLOW = "CallbackWorkflow"
BATCH_WORKFLOW = "BatchWorkflow"
# A batch too large for one BatchWorkflow run: its chunks are BatchWorkflow runs (workflows/batch_chunks.py).
CHUNKED_BATCH_WORKFLOW = "ChunkedBatchWorkflow"
USER_WORKFLOW = "UserWorkflow"
# A user's open digest for one topic (workflows/digest.py).
DIGEST_WORKFLOW = "DigestWorkflow"
SMS_QUOTA_WORKFLOW = "SmsQuotaWorkflow"
IDEMPOTENCY_KEY_WORKFLOW = "IdempotencyKeyWorkflow"

# The failure type of a job's run that failed (its details carry the job's final state): the run fails too,
# so the Web UI shows it as Failed.
JOB_FAILED = "JobFailed"

# The failure type of a send that declined to run as a local activity on a worker whose channel has a
# rate limit (activities/rate_limit.py): the job then sends the attempt through the task queue instead.
FIRST_ATTEMPT_DECLINED = "FirstAttemptDeclined"
