"""Every `workflow.patched` id Herald's workflows use: what it guards, since when, and when it can go.

A patch id is written into the history of each run that passes its `workflow.patched` call (a
marker), and a worker replays every open run, and every closed run it is asked to query, through
today's code. So a patch lives on in two steps after it lands (docs/versioning.md):

1. its old branch, while a run that started before the patch can still be replayed: until the
   namespace's retention (HERALD_TEMPORAL_RETENTION_DAYS, 30 days) has passed since the last such
   run closed. Then `workflow.patched(ID)` becomes `workflow.deprecate_patch(ID)` and the old branch,
   with the recorded histories in `old_path_histories`, is deleted;
2. the `deprecate_patch` call, while a run that recorded the marker can be: the retention again,
   after the last run started before the deprecating deploy closed. Then the call goes, with the
   histories in `marker_histories`, and the entry here.

The ids never change (a renamed id is a different patch: every recorded run would replay the old
branch). tests/replay/test_patches.py keeps this list equal to the ids the code uses and the
histories listed here equal to what tests/replay/histories holds.
"""

from __future__ import annotations

from dataclasses import dataclass

LEAN_LIFECYCLE = "lean-lifecycle"
DEAD_LETTER_MEMO = "dead-letter-memo"
THEN_CHAINING = "then-chaining"
BATCH_DEAD_LETTER = "batch-dead-letter"
CANCEL_STOPS_RETRIES = "batch-cancel-stops-retries"
INTERRUPTED_FIRST_ATTEMPT = "interrupted-first-attempt"
SMS_QUOTA_AT_SEND = "sms-quota-at-send"
RATE_LIMITED_FIRST_ATTEMPT = "rate-limited-first-attempt"
RATE_LIMITED_BATCH_SLICES = "rate-limited-batch-slices"
PREFERENCES_AT_SEND = "preferences-at-send"
RELEASABLE_WAITS = "releasable-waits"
USER_TELLS_JOBS = "user-tells-waiting-jobs"
DIGESTS = "digests"
RELEASABLE_BACKOFFS = "releasable-backoffs"
DIGEST_LEAVE_ANSWERED = "digest-leave-answered"


@dataclass(frozen=True)
class Patch:
    id: str
    # The workflow code the patch guards, and what its old branch did.
    guards: str
    # The commit (and its date) that added the `workflow.patched` call: runs started by a worker
    # from before its deploy take the old branch.
    since: str
    # Recorded histories (paths under tests/replay/histories) from before the patch whose replay
    # reaches the call: they take the old branch, so they go with it.
    old_path_histories: tuple[str, ...]
    # Recorded histories holding the patch's marker: they need the id called (patched or
    # deprecate_patch) until they are deleted.
    marker_histories: tuple[str, ...]
    # Where its retirement stands, and what may go with the old branch.
    retire: str


PATCHES: dict[str, Patch] = {
    p.id: p
    for p in [
        Patch(
            id=LEAN_LIFECYCLE,
            guards=(
                "TrackedJobWorkflow.run_job (workflows/job_tracking.py): JobTracker, the lean lifecycle "
                "(first attempt a local activity, the state in memory, the attempt log travelling with the "
                "attempts). Old branch: JobTrackerV0, frozen in workflows/job_tracking_v0.py (a memo upsert per "
                "change, an attempt_finished signal per attempt). A spec that names its lifecycle "
                "(JobSpec.lifecycle, set by new_spec since 2026-12-05) runs JobTracker without asking, so new "
                "runs hold no marker; specs from before the field (old runs, schedules, then follow-ups) still ask."
            ),
            since="db1cb43 (2026-11-30)",
            old_path_histories=(
                "v0/delay_then_cancel",
                "v0/delayed_24h_waiting",
                "v0/email_sent",
                "v0/failed_after_3_attempts",
                "v0/result_callback",
                "v0/webhook_500_500_200",
            ),
            marker_histories=(
                "backoff-v1/rate_limited_webhook_retried",
                "backoff-v1/sms_released_in_two_backoffs",
                "backoff-v1/webhook_failed_after_three_attempts",
                "chains-v1/report_built",
                "chains-v1/then_follow_up_completed",
                "chains-v1/then_parent_completed",
                "chains-v1/then_parent_failed",
                "cleanup-v1/cleanup_api_completed",
                "cleanup-v1/cleanup_scheduled_completed",
                "digest-v1/digested_item_cancelled",
                "digest-v1/digested_item_sent",
                "digest-v2/cancelled_before_the_send",
                "digest-v2/cancelled_during_the_send",
                "digest-v2/released_during_the_send",
                "digest-v2/sent_with_the_digest",
                "entities-v1/typed_unknown_user_failed",
                "entities-v1/typed_welcome_sent",
                "prefs-v1/channel_opt_out_suppressed",
                "prefs-v1/quiet_hours_deferred_open",
                "prefs-v1/quiet_hours_told_sent",
                "prefs-v1/released_delay_sent",
                "rate-v1/declined_first_attempt_retried",
                "rate-v1/declined_first_attempt_sent",
                "rate-v1/scheduled_run_declined_sent",
                "throttle-v1/redriven_sms_sent",
                "throttle-v1/redriven_sms_waits_for_a_slot_open",
                "v1/delay_then_cancel",
                "v1/delayed_24h_waiting",
                "v1/email_sent",
                "v1/failed_after_3_attempts",
                "v1/result_callback",
                "v1/webhook_500_500_200",
            ),
            retire=(
                "Waiting: runs from before db1cb43 may wait on a delay or a callback for a long time. Once "
                "none is open and the retention has passed: deprecate_patch, delete workflows/job_tracking_v0.py, "
                "the v0 branch of run_job and of attempt_finished, and histories/v0 (its CallbackWorkflow child "
                "too: v1/result_callback_child covers that type)."
            ),
        ),
        Patch(
            id=DEAD_LETTER_MEMO,
            guards=(
                "JobTracker.run's failure path (workflows/job_tracking.py): a failed job writes its final "
                "state into the memo, so the DLQ lists it from visibility. Old branch: no memo upsert."
            ),
            since="5002c7f (2026-11-30)",
            old_path_histories=("v1/failed_after_3_attempts",),
            marker_histories=(
                "backoff-v1/webhook_failed_after_three_attempts",
                "chains-v1/then_parent_failed",
                "entities-v1/typed_unknown_user_failed",
                "lifecycle-v1/failed_after_3_attempts",
            ),
            retire=(
                "Waiting: a job that failed on a worker from before 5002c7f passed the call without the marker "
                "(it may still be calling back, and stays queryable for the retention after it closed). Once the "
                "retention has passed since the last of them closed: deprecate_patch, and delete "
                "v1/failed_after_3_attempts."
            ),
        ),
        Patch(
            id=THEN_CHAINING,
            guards=(
                "JobTracker.run after a completed send (workflows/job_tracking.py): a job with a `then` starts "
                "its follow-up as a child workflow. Old branch: none started."
            ),
            since="c9a27d1 (2026-12-01)",
            old_path_histories=(),
            marker_histories=("chains-v1/then_parent_completed",),
            retire=(
                "Ready for deprecate_patch: only a run whose input has a `then` reaches the call, and no input "
                "had one before c9a27d1, so no run can take the old branch."
            ),
        ),
        Patch(
            id=BATCH_DEAD_LETTER,
            guards=(
                "NotificationWorkflow.run (workflows/notification.py): a batch item's dead letter (input with "
                "`batch_failure`) fails at once with the item's state. Old branch: sends it as a job."
            ),
            since="df0582e (2026-12-01)",
            old_path_histories=(),
            marker_histories=("batch-v1/batch_dead_letter_item",),
            retire=(
                "Ready for deprecate_patch: it landed with batches, so every run with a `batch_failure` has the marker."
            ),
        ),
        Patch(
            id=CANCEL_STOPS_RETRIES,
            guards=(
                "BatchWorkflow._record (workflows/batch.py): an item whose attempt fails after the whole batch "
                "was cancelled is cancelled, not retried. Old branch: it waits out its backoff (and the batch "
                "never ends)."
            ),
            since="7326987 (2026-12-01)",
            old_path_histories=(),
            marker_histories=("batch-v2/batch_cancelled_in_flight",),
            retire=(
                "Waiting: a batch started before 7326987 and cancelled with items in flight takes the old "
                "branch (no recorded history does). Once none is open and the retention has passed: "
                "deprecate_patch."
            ),
        ),
        Patch(
            id=INTERRUPTED_FIRST_ATTEMPT,
            guards=(
                "JobTracker._send after a failed first attempt (workflows/job_tracking.py): where the attempt "
                "log has first attempts cut short by a crash (`interrupted`), the attempts after them are "
                "numbered on from the last and get what is left of the limit. Old branch: attempts 2 onwards, "
                "the whole limit less one."
            ),
            since="2026-12-04 (issue 16, item 7)",
            old_path_histories=(),
            marker_histories=(),
            retire=(
                "Ready for deprecate_patch: only a log with an interrupted attempt reaches the call, and no "
                "attempt was logged as interrupted before the patch."
            ),
        ),
        Patch(
            id=SMS_QUOTA_AT_SEND,
            guards=(
                "NotificationWorkflow.run (workflows/notification.py) and JobTracker._wait_for_slot "
                "(workflows/job_tracking.py): an SMS the API did not count at intake (no `sms_slot_taken`: a "
                "schedule's run, a redrive) takes a slot of its number's (and user's) hourly quota before it is "
                "sent, and waits `delayed` while the quota is full. Old branch: sent without counting."
            ),
            since="2026-12-04 (issue 16, item 4)",
            old_path_histories=(),
            marker_histories=("throttle-v1/redriven_sms_sent", "throttle-v1/redriven_sms_waits_for_a_slot_open"),
            retire=(
                "Waiting: an SMS run started before the deploy (a delayed one may wait for days) takes the old "
                "branch, asked at its start. Once none is open and the retention has passed: deprecate_patch."
            ),
        ),
        Patch(
            id=RATE_LIMITED_FIRST_ATTEMPT,
            guards=(
                "JobTracker._send after a failed first attempt (workflows/job_tracking.py): a first attempt that "
                "a rate-limited worker declined to run as a local activity (FirstAttemptDeclined, "
                "activities/rate_limit.py) is not counted, and attempts 1 onwards go out as one activity through "
                "the task queue. Old branch: the declined try ends the job failed after one attempt."
            ),
            since="2026-12-05 (issue 16, item 1)",
            old_path_histories=(),
            marker_histories=(
                "backoff-v1/rate_limited_webhook_retried",
                "rate-v1/declined_first_attempt_sent",
                "rate-v1/declined_first_attempt_retried",
                "rate-v1/scheduled_run_declined_sent",
            ),
            retire=(
                "Ready for deprecate_patch: only a declined first attempt reaches the call, and no worker declined "
                "one before the patch."
            ),
        ),
        Patch(
            id=RATE_LIMITED_BATCH_SLICES,
            guards=(
                "BatchWorkflow._send_slice (workflows/batch.py): a slice that a rate-limited worker declined "
                "(SliceOutcomes.declined, activities/rate_limit.py) puts its items back, unsent and their attempt "
                "not counted, and the batch sends one item per activity from then on. Old branch: the declined "
                "slice's items stay `processing` for ever."
            ),
            since="2026-12-05 (issue 16, item 1)",
            old_path_histories=(),
            marker_histories=("rate-v1/batch_one_by_one",),
            retire=(
                "Ready for deprecate_patch: only a declined slice reaches the call, and no worker declined one "
                "before the patch."
            ),
        ),
        Patch(
            id=PREFERENCES_AT_SEND,
            guards=(
                "JobTracker.run before the send (workflows/job_tracking.py): a notification for a user "
                "(JobSpec.audience) is decided against the user's preferences (the check_preferences local "
                "activity): suppressed, deferred for quiet hours (registered with the user's workflow, woken by "
                "a change of preferences) or sent. Old branch: sent without a check."
            ),
            since="2026-12-05 (issue 18, item 2)",
            old_path_histories=(),
            marker_histories=(
                "digest-v1/digested_item_cancelled",
                "digest-v1/digested_item_sent",
                "digest-v2/cancelled_before_the_send",
                "digest-v2/cancelled_during_the_send",
                "digest-v2/released_during_the_send",
                "digest-v2/sent_with_the_digest",
                "prefs-v1/channel_opt_out_suppressed",
                "prefs-v1/quiet_hours_deferred_open",
                "prefs-v1/quiet_hours_told_sent",
            ),
            retire=(
                "Ready for deprecate_patch: only a run whose input has an audience reaches the call, and no input "
                "had one before the patch."
            ),
        ),
        Patch(
            id=RELEASABLE_WAITS,
            guards=(
                "JobTracker._wait_until_due and the first retry backoff in JobTracker._send "
                "(workflows/job_tracking.py): the timer is a wait_condition that a `release` signal ends at once "
                "(POST /jobs/{id}/release), after which the job's state is written into the memo. Old branch: a "
                "plain timer."
            ),
            since="2026-12-05 (issue 18, item 5)",
            old_path_histories=("v1/delay_then_cancel", "v1/delayed_24h_waiting", "v1/webhook_500_500_200"),
            marker_histories=(
                "backoff-v1/sms_released_in_two_backoffs",
                "backoff-v1/webhook_failed_after_three_attempts",
                "lifecycle-v1/delay_then_cancel",
                "lifecycle-v1/delayed_24h_waiting",
                "lifecycle-v1/failed_after_3_attempts",
                "lifecycle-v1/webhook_500_500_200",
                "prefs-v1/released_delay_sent",
                "release-v1/sms_released_in_two_backoffs",
            ),
            retire=(
                "Waiting: a job delayed (or in its first backoff) on a worker from before the deploy takes the old "
                "branch. Once none is open and the retention has passed: deprecate_patch, and delete the listed "
                "histories."
            ),
        ),
        Patch(
            id=USER_TELLS_JOBS,
            guards=(
                "UserWorkflow.run (workflows/user.py): after a `put` that changed the preferences, the user's "
                "workflow signals every job registered as waiting on them (`preferences_changed`). Old branch: "
                "none told (no job registered before the patch)."
            ),
            since="2026-12-05 (issue 18, item 3)",
            old_path_histories=(),
            marker_histories=("prefs-v1/user_told_waiting_jobs_open",),
            retire=(
                "Ready for deprecate_patch: only a user with registered jobs reaches the call, and no job "
                "registered before the patch."
            ),
        ),
        Patch(
            id=DIGESTS,
            guards=(
                "JobTracker._apply_preferences (workflows/job_tracking.py): a notification for a user may be told "
                "to join the user's digest for its topic (DeliveryCheck.digests), and then waits in it "
                "(workflows/digest.py), leaving it when cancelled, released or no longer digested. Old branch: "
                "the preferences check never answers `digest`."
            ),
            since="2026-12-05 (issue 18, item 4)",
            old_path_histories=(
                "prefs-v1/channel_opt_out_suppressed",
                "prefs-v1/quiet_hours_deferred_open",
                "prefs-v1/quiet_hours_told_sent",
            ),
            marker_histories=(
                "digest-v1/digested_item_cancelled",
                "digest-v1/digested_item_sent",
                "digest-v2/cancelled_before_the_send",
                "digest-v2/cancelled_during_the_send",
                "digest-v2/released_during_the_send",
                "digest-v2/sent_with_the_digest",
            ),
            retire=(
                "Waiting: a notification deferred by quiet hours on a worker from before the deploy takes the old "
                "branch (it is never digested). Once none is open and the retention has passed: deprecate_patch."
            ),
        ),
        Patch(
            id=RELEASABLE_BACKOFFS,
            guards=(
                "JobTracker._send after the first backoff and JobTracker._queued after a failed first attempt "
                "(workflows/job_tracking.py): every later attempt is an activity of its own that hands a failure "
                "back at once (AttemptContext.own_backoff), and the workflow waits out each backoff on a timer a "
                "release ends (`_one_by_one`, `_back_off`), `delayed` in the memo. Old branch: attempts 2 onwards "
                "(all of them on a rate-limited channel) as one activity retried by the Temporal server, whose "
                "backoffs a release could not end; a failure of that activity was the last attempt's."
            ),
            since="2026-12-05 (issue 18, item 5: every retry backoff)",
            old_path_histories=("v1/failed_after_3_attempts", "v1/webhook_500_500_200"),
            marker_histories=(
                "backoff-v1/rate_limited_webhook_retried",
                "backoff-v1/sms_released_in_two_backoffs",
                "backoff-v1/webhook_failed_after_three_attempts",
                "lifecycle-v1/failed_after_3_attempts",
                "lifecycle-v1/webhook_500_500_200",
                "release-v1/sms_released_in_two_backoffs",
            ),
            retire=(
                "Waiting: a job in a retry backoff (or, on a rate-limited channel, sending) on a worker from before "
                "the deploy takes the old branch. Once none is open and the retention has passed: deprecate_patch, "
                "delete the listed histories, and JobTracker._activity with them."
            ),
        ),
        Patch(
            id=DIGEST_LEAVE_ANSWERED,
            guards=(
                "JobTracker._leave_digest and the cancel path of JobTracker.run (workflows/job_tracking.py): a job "
                "leaving its digest (cancelled, released, no longer digested) asks the digest by its `take_out` "
                "update (the leave_digest local activity) and, when the digest's send had begun, waits for "
                "`digest_sent` and ends in the digest instead of going alone (or cancelled). Old branch: the "
                "`leave` signal, and the job went alone even when the digest's send had begun."
            ),
            since="2026-12-05 (issue 18, item 4: the digest race)",
            old_path_histories=("digest-v1/digested_item_cancelled",),
            marker_histories=(
                "digest-v2/cancelled_before_the_send",
                "digest-v2/cancelled_during_the_send",
                "digest-v2/released_during_the_send",
            ),
            retire=(
                "Waiting: a job waiting in a digest on a worker from before the deploy takes the old branch when "
                "it leaves. Once none is open and the retention has passed: deprecate_patch, and delete the "
                "listed history."
            ),
        ),
    ]
}


@dataclass(frozen=True)
class QueueMove:
    """Workflows that moved to another task queue: the worker serves them on the old one too while runs
    started there are open (a run keeps its queue, over a continue-as-new too)."""

    workflows: tuple[str, ...]
    old_queue: str
    new_queue: str
    since: str
    # When the old queue's registration (worker.py) can go, and how to tell.
    retire: str


QUEUE_MOVES: dict[str, QueueMove] = {
    "intake": QueueMove(
        workflows=("SmsQuotaWorkflow", "IdempotencyKeyWorkflow"),
        old_queue="herald-maintenance",
        new_queue="herald-intake",
        since="2026-12-04 (issue 16, item 2)",
        retire=(
            "Waiting: an Idempotency-Key's run ends HERALD_IDEMPOTENCY_KEEP_HOURS (24 h) after its first use, "
            "continue-as-new or not; an SMS quota's run ends after an hour without an SMS to its number, but a "
            "number that gets one at least hourly keeps its run (and its queue) open. Once "
            "`WorkflowType IN ('SmsQuotaWorkflow', 'IdempotencyKeyWorkflow') AND TaskQueue = "
            "'herald-maintenance' AND ExecutionStatus = 'Running'` finds nothing (at the latest: terminate "
            "the quota runs it finds; a terminated quota only forgets that hour's count): drop the two "
            "from worker.py's WORKFLOWS, then this entry."
        ),
    )
}
