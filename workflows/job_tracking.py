"""What every Herald job workflow does around its one send.

The lifecycle is lean on the happy path: the API writes the job's first state into the memo
when it starts the workflow, the first attempt runs as a local activity inside the first
workflow task, and the final state is the workflow's result (or its failure's details). So a
job that is sent at once costs one workflow task and no activity task, and the API reads
everything else from what Temporal keeps anyway (describe: the pending workflow task, the
pending activity's attempt, last failure, next attempt time and heartbeat details; the close
status; the result). The memo is written again only where the workflow keeps running after a
change the API must see: waiting out a retry backoff, and calling back after the end.
The attempt log travels with the attempts themselves (activities/attempt_log.py).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    WorkflowAlreadyStartedError,
    is_cancelled_exception,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.digests import DigestActivities
    from activities.preferences import PreferenceActivities
    from common.jobs import start_options
    from common.logs import log_event
    from common.metrics import count_dead_letter, count_job_finished
    from common.models import (
        ATTEMPT_SIGNAL,
        DIGEST_JOINED_SIGNAL,
        DIGEST_LEAVE_SIGNAL,
        DIGEST_SENT_SIGNAL,
        JOB_STATUS_KEY,
        JOB_WAITING_SIGNAL,
        LEAN_LIFECYCLE_INPUT,
        PREFERENCES_CHANGED_SIGNAL,
        RELEASE_SIGNAL,
        RELEASE_WAIT_SIGNAL,
        STATE_MEMO_KEY,
        TASK_QUEUES,
        AttemptContext,
        AttemptRecord,
        Audience,
        CallbackState,
        Decision,
        DeliveryCheck,
        DigestItem,
        DigestJoin,
        DigestJoined,
        DigestLeave,
        EmailMessage,
        FollowUp,
        JobSpec,
        JobState,
        Phase,
        QuotaAnswer,
        ReleaseSeen,
        SendInput,
        TypedEmail,
        Verdict,
        WaitingOn,
        WebhookRequest,
        stamped,
        then_id,
        user_workflow_id,
    )
    from common.names import FIRST_ATTEMPT_DECLINED, JOB_FAILED

from workflows.callback import CallbackWorkflow
from workflows.failures import attempt_log, failure_cause, failure_message
from workflows.job_state import callback_body, send_options
from workflows.job_tracking_v0 import JobTrackerV0

# What each patch guards and when it can go: workflows/patches.py.
from workflows.patches import (
    DEAD_LETTER_MEMO,
    DIGEST_LEAVE_ANSWERED,
    DIGESTS,
    INTERRUPTED_FIRST_ATTEMPT,
    LEAN_LIFECYCLE,
    PREFERENCES_AT_SEND,
    RATE_LIMITED_FIRST_ATTEMPT,
    RELEASABLE_BACKOFFS,
    RELEASABLE_WAITS,
    THEN_CHAINING,
)

# A run's first workflow task sees its start, the task's scheduling and its start; more means an
# earlier try of the task (or a signal or cancel that came first).
FIRST_TASK_EVENTS = 3

# The shortest wait for a full SMS quota before asking again.
MIN_QUOTA_WAIT = timedelta(seconds=1)
# One preferences check (a query of the user's workflow): Temporal answers in well under a second.
PREFERENCES_TIMEOUT = timedelta(seconds=30)
# How long a job that left its digest after the digest had told it waits for that word to arrive (it is in
# the job's history by then: a moment); past it, the digest never held the job.
TOLD_WAIT = timedelta(minutes=1)


class SendFailed(Exception):
    def __init__(self, message: str, deliveries: list[AttemptRecord]) -> None:
        super().__init__(message)
        self.message, self.deliveries = message, deliveries


class JobTracker:
    def __init__(self) -> None:
        self.spec: JobSpec | None = None
        self.state: JobState | None = None
        # Whether the first attempt may be a rerun of one cut short by a crash (AttemptContext.maybe_rerun).
        self.maybe_rerun = False
        # POST /jobs/{id}/release asked (RELEASE_SIGNAL): the job's next releasable wait ends at once.
        self.released = False
        # Released once: quiet hours no longer hold the job (its opt-outs still do).
        self.run_now = False
        # The user's preferences changed while the job waited on them (PREFERENCES_CHANGED_SIGNAL).
        self.preferences_changed = False
        # The rule a notification for a user passed last, recorded as `sent` once it went.
        self.sent_rule: str | None = None
        # The digest's workflow the job waits in (workflows/digest.py), its answer to the join, and the id
        # of the digest it went out in ("": the digest could not be sent, the job goes alone).
        self.digest_workflow: str | None = None
        self.digest_joined: DigestJoined | None = None
        self.digest_sent: str | None = None

    # ---- the job's life ----------------------------------------------------------------
    async def run(
        self,
        spec: JobSpec,
        activity: Callable[..., Any],
        message: SendInput,
        take_slot: Callable[[int], Awaitable[QuotaAnswer]] | None = None,
    ) -> JobState:
        """`take_slot(n)`: the n-th ask for a quota slot before the send, where the job takes one."""
        if not spec.job_id:
            # A run started by a schedule or as a `then` follow-up: a job of its own, named by its
            # workflow id.
            info = workflow.info()
            spec = replace(spec, job_id=info.workflow_id, created_at=info.start_time.isoformat())
        # The job id as idempotency key where the input has none (those runs, also when redriven).
        # No command: a no-op for every other input, so recorded runs replay the same.
        message = stamped(message, spec.job_id)
        self.spec = spec
        # Read where the run begins on this worker: rebuilt by replay (another worker ran it before,
        # or it left the cache), or a first task with more than its start. Only the first attempt's
        # input carries it (no command does), and only there does the attempt read the history.
        self.maybe_rerun = (
            workflow.unsafe.is_replaying() or workflow.info().get_current_history_length() > FIRST_TASK_EVENTS
        )
        # The same first state the API wrote into the memo; it changes here, in memory.
        self.state = JobState.initial(spec, Phase.QUEUED, _now())
        try:
            await self._wait_until_due()
            # Decided against the user's preferences now, just before the send. Only runs accepted with an
            # audience reach the call (none before the patch).
            decided = spec.audience is not None and workflow.patched(PREFERENCES_AT_SEND)
            if decided and spec.audience is not None and not await self._apply_preferences(spec.audience, message):
                await self._call_back()  # suppressed: final, not a failure
                return self.state
            if take_slot is not None:
                await self._wait_for_slot(take_slot)
            self._change(phase=Phase.PROCESSING, not_before=None, waiting_on=None)
            receipt = await self._send(activity, message)
        except SendFailed as failed:
            self._end(Phase.FAILED, error=failed.message, deliveries=failed.deliveries)
            if workflow.patched(DEAD_LETTER_MEMO):
                # A dead letter: the DLQ lists it, reason and attempts included, from visibility alone.
                self._publish()
            log_event(
                "dead_lettered",
                log=workflow.logger,
                job_id=self.state.job_id,
                kind=self.state.kind,
                attempts=self.state.attempts,
                error=self.state.error,
            )
            count_dead_letter(self.state.kind)
            await self._call_back()
            # The run fails too, so the Web UI and `temporal workflow list` show it as Failed; the
            # details carry the final state for the API.
            raise ApplicationError(failed.message, self.state, type=JOB_FAILED, non_retryable=True) from None
        except asyncio.CancelledError:
            if self.digest_workflow is not None and workflow.patched(DIGEST_LEAVE_ANSWERED):
                # Cancelled while in a digest: it leaves it (POST /jobs/{id}/cancel), unless the digest's send
                # had begun: then it went out in the digest, and says so.
                went = await self._leave_digest()
                if went:
                    self._sent_in_digest(went)
                    await self._call_back()
                    return self.state
            self._end(Phase.CANCELLED)
            # Cancelled while in a digest: it leaves it (POST /jobs/{id}/cancel). Runs from before the patch.
            await self._leave_digest()
            raise
        deliveries = getattr(receipt, "deliveries", [])
        result = {k: v for k, v in asdict(receipt).items() if k != "deliveries"}
        if self.sent_rule is not None:
            self._decided(self.sent_rule, "sent")
        self._end(Phase.COMPLETED, result=result, error=None, deliveries=deliveries)
        if spec.then is not None and workflow.patched(THEN_CHAINING):
            # Before the callback: the follow-up need not wait for a slow receiver, and the callback's
            # memo already names it.
            await self._start_then(spec.then)
        await self._call_back()
        return self.state

    async def _wait_until_due(self) -> None:
        assert self.spec is not None
        # The server's clock, from the moment the job was started (time-skipping moves it too).
        due = self.spec.due_at(workflow.info().start_time)
        if due is None or due <= workflow.now():
            return
        # The API wrote `delayed` and `not_before` into the memo when it started the job.
        self._change(phase=Phase.DELAYED, not_before=due.isoformat(), waiting_on=WaitingOn.DELAY)
        summary = f"delayed until {due.isoformat()}"
        if workflow.patched(RELEASABLE_WAITS):
            await self._wait(due - workflow.now(), summary)
            return
        # A durable timer: survives worker restarts, skipped instantly in time-skipping tests.
        await workflow.sleep(due - workflow.now(), summary=summary)

    async def _wait(self, duration: timedelta, summary: str, woken: Callable[[], bool] = lambda: False) -> bool:
        """A durable timer that a release (POST /jobs/{id}/release) ends at once, and `woken` too; True
        when released. A released job's state is written into the memo: the API reads it there."""
        if not self.released:
            try:
                await workflow.wait_condition(
                    lambda: self.released or woken(), timeout=duration, timeout_summary=summary
                )
            except TimeoutError:
                return False
        if not self.released:
            return False
        self.released, self.run_now = False, True
        self._decided("release", "released")
        self._change(phase=Phase.QUEUED, not_before=None, waiting_on=None, publish=True)
        return True

    async def _apply_preferences(self, audience: Audience, message: SendInput) -> bool:
        """Decide the notification against its user's preferences (common/preferences.py), now: True to
        send it; False when it is suppressed or went out in a digest (the job has ended). Inside the user's
        quiet hours it waits `delayed` until they end, registered with the user's workflow, which tells it
        of a change of preferences at once (workflows/user.py): then it is decided again. No polling. A
        digested topic joins the user's digest (workflows/digest.py) and waits there, likewise told."""
        assert self.spec is not None and self.state is not None
        # Only runs past the patch may be told to join a digest (older ones never see that verdict).
        digests = workflow.patched(DIGESTS)
        while True:
            check = DeliveryCheck(
                user_id=audience.user_id,
                scope=self.spec.tenant_scope,
                channel=audience.channel,
                topic=audience.topic,
                critical=audience.critical,
                now=_now(),
                released=self.run_now,
                digests=digests,
            )
            verdict = await workflow.execute_local_activity_method(
                PreferenceActivities.check_preferences,
                check,
                start_to_close_timeout=PREFERENCES_TIMEOUT,
                # Until Temporal answers: the notification waits, never skips its user's preferences.
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)),
                summary="the user's preferences",
            )
            if verdict.outcome == "digest" and digests:
                outcome = await self._wait_in_digest(audience, message, verdict)
                if outcome == "sent":
                    return False
                if outcome == "alone":
                    self.sent_rule = "digest"
                    return True
                continue  # released, or the preferences changed: decided again
            # No longer digested (the digest turned off, the topic removed): it leaves its digest, unless the
            # digest's send had begun: then it went out in the digest.
            if went := await self._leave_digest():
                self._sent_in_digest(went)
                return False
            if verdict.outcome == "send":
                self.sent_rule = verdict.rule
                return True
            if verdict.outcome == "suppress":
                self._decided(verdict.rule, "suppressed")
                self._end(Phase.SUPPRESSED, suppressed_reason=verdict.reason, not_before=None, waiting_on=None)
                return False
            assert verdict.until is not None, f"a {verdict.outcome} verdict names when it ends"
            until = datetime.fromisoformat(verdict.until)
            self._decided(verdict.rule, "deferred", until=verdict.until)
            self._change(phase=Phase.DELAYED, not_before=verdict.until, waiting_on=verdict.rule, publish=True)
            self.preferences_changed = False
            await self._register_with_user(audience)
            if (
                not await self._wait(
                    until - workflow.now(), f"quiet hours until {verdict.until}", woken=lambda: self.preferences_changed
                )
                and self.preferences_changed
            ):
                # Decided again below; meanwhile the memo must not promise the old end.
                self._change(phase=Phase.QUEUED, not_before=None, waiting_on=None, publish=True)

    async def _wait_in_digest(self, audience: Audience, message: SendInput, verdict: Verdict) -> str:
        """Join the user's digest for the topic (once) and wait in it `delayed`: "sent" when the digest went
        out (the job has ended, `result.digestId`), "alone" when the digest could not be sent, "again" when
        released (it left the digest) or told of a change of preferences (decided again)."""
        assert self.spec is not None and self.state is not None and audience.topic is not None
        if self.digest_workflow is None:
            assert verdict.until is not None, "a digest verdict names when a new digest goes"
            self._decided("digest", "digested", until=verdict.until)
            self._change(phase=Phase.DELAYED, not_before=verdict.until, waiting_on=WaitingOn.DIGEST, publish=True)
            self.digest_joined, self.digest_sent = None, None
            self.digest_workflow = await workflow.execute_local_activity_method(
                DigestActivities.join_digest,
                DigestJoin(
                    user_id=audience.user_id,
                    scope=self.spec.tenant_scope,
                    topic=audience.topic,
                    item=_digest_item(self.spec.job_id, message),
                    until=verdict.until,
                    tenant=self.spec.tenant,
                ),
                start_to_close_timeout=PREFERENCES_TIMEOUT,
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)),
                summary=f"join the digest of {audience.topic!r}",
            )
        self.preferences_changed = False
        await self._register_with_user(audience)
        while True:
            await workflow.wait_condition(
                lambda: (
                    self.digest_sent is not None
                    or self.released
                    or self.preferences_changed
                    or self._digest_answer() is not None
                )
            )
            if self.digest_sent is not None:
                break
            answer = self._digest_answer()
            if answer is not None:
                # The digest's answer: which digest the job waits in, and when it goes.
                self._change(digest_id=answer.digest_id, not_before=answer.next_at or None, publish=True)
                continue
            if self.released:
                went = await self._leave_digest()
                self.released = False
                if went:
                    # Too late: the digest's send had begun, and the job went out in it.
                    self.digest_sent = went
                    break
                self.run_now = True
                self._decided("release", "released")
                self._change(phase=Phase.QUEUED, not_before=None, waiting_on=None, digest_id=None, publish=True)
                return "again"
            return "again"  # the preferences changed
        digest_id, self.digest_workflow = self.digest_sent, None
        if not digest_id:
            self._change(digest_id=None)
            return "alone"
        self._sent_in_digest(digest_id)
        return "sent"

    def _sent_in_digest(self, digest_id: str) -> None:
        """The job went out in the digest `digest_id`: it ends `completed` with `result.digestId`."""
        self._decided("digest", "sent")
        self._end(
            Phase.COMPLETED, result={"digestId": digest_id}, digest_id=digest_id, not_before=None, waiting_on=None
        )

    def _digest_answer(self) -> DigestJoined | None:
        """The digest's answer to the join, where the job's state does not show it yet."""
        answer, state = self.digest_joined, self.state
        if answer is None or state is None:
            return None
        if state.digest_id == answer.digest_id and state.not_before == (answer.next_at or None):
            return None
        return answer

    async def _leave_digest(self) -> str | None:
        """Take the job out of the digest it waits in, if any. None: it is out (or never was in one, or its
        digest could not be sent) and may go alone. Else the id of the digest it went out in: the digest's
        send had begun when it asked, so it waited to be told, and must not go out again."""
        if self.digest_workflow is None:
            return None
        assert self.spec is not None
        digest, self.digest_workflow = self.digest_workflow, None
        if self.state is not None and self.state.digest_id:
            self._change(digest_id=None)
        if workflow.patched(DIGEST_LEAVE_ANSWERED):
            return await self._take_out_of_digest(digest)
        try:
            await workflow.get_external_workflow_handle(digest).signal(DIGEST_LEAVE_SIGNAL, self.spec.job_id)
        except FailureError as exc:  # the digest's workflow is gone
            log_event("digest.leave_failed", log=workflow.logger, job_id=self.spec.job_id, error=str(exc))
        return None

    async def _take_out_of_digest(self, digest: str) -> str | None:
        """Leave by the digest's `take_out` update (a local activity; workflows/digest.py): taken out of the
        open digest, or in the digest being sent (or told already): then wait for `digest_sent`. A cancel
        that arrives meanwhile waits too: a job never says `cancelled` about a message that went out."""
        assert self.spec is not None
        if self.digest_sent is None:
            left = await workflow.execute_local_activity_method(
                DigestActivities.leave_digest,
                DigestLeave(digest_workflow=digest, job_id=self.spec.job_id),
                start_to_close_timeout=PREFERENCES_TIMEOUT,
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)),
                summary="leave the digest",
            )
            if left.taken:
                return None
            told = asyncio.ensure_future(self._told(left.digest_id))
            try:
                await asyncio.shield(told)
            except asyncio.CancelledError:
                if not await told:
                    raise  # cancelled, and nothing went out
        return self.digest_sent or None

    async def _told(self, digest_id: str | None) -> str | None:
        """Wait for the digest's word (`digest_sent`): as long as its send takes, or, where the digest had told
        the job already (`digest_id` None), a moment: the word is in the job's history."""
        try:
            await workflow.wait_condition(
                lambda: self.digest_sent is not None,
                timeout=None if digest_id else TOLD_WAIT,
                timeout_summary="the digest's word",
            )
        except TimeoutError:
            log_event("digest.never_told", log=workflow.logger, job_id=self.state.job_id if self.state else "")
            return None
        return self.digest_sent or None

    async def _register_with_user(self, audience: Audience) -> None:
        """Tell the user's workflow this job waits on their preferences, so a change reaches it at once."""
        assert self.spec is not None
        user = workflow.get_external_workflow_handle(user_workflow_id(audience.user_id, self.spec.tenant_scope))
        try:
            await user.signal(JOB_WAITING_SIGNAL, self.spec.job_id)
        except FailureError as exc:  # the user's workflow is gone: the job still ends its wait on its timer
            log_event("preferences.unregistered", log=workflow.logger, job_id=self.spec.job_id, error=str(exc))

    def release(self) -> None:
        self.released = True

    def waits_as_seen(self, seen: ReleaseSeen) -> bool:
        """Still in the wait POST /jobs/{id}/release read it in: `delayed`, after as many attempts. A release
        that reaches the job once that wait ended (its next attempt running, or failed and in the backoff
        after it) is not for the wait it is in now."""
        return self.state is not None and self.state.phase == Phase.DELAYED and self.state.attempts == seen.attempts

    async def _wait_for_slot(self, take_slot: Callable[[int], Awaitable[QuotaAnswer]]) -> None:
        """Ask for a quota slot until one is granted; while the quota is full the job is `delayed` until
        the moment a slot frees (by the quota's clock, the server's), on a durable timer."""
        for n in itertools.count():
            answer = await take_slot(n)
            if answer.granted:
                return
            frees = (
                datetime.fromisoformat(answer.retry_at)
                if answer.retry_at
                else workflow.now() + timedelta(seconds=answer.retry_after_s or 0)
            )
            # Never a busy loop: a slot that frees "now" is asked for again a second later.
            frees = max(frees, workflow.now() + MIN_QUOTA_WAIT)
            # The API reads `delayed` and `nextAttemptAt` from the memo (api/jobs/service.py).
            self._decided("throttle", "deferred", until=frees.isoformat())
            self._change(phase=Phase.DELAYED, not_before=frees.isoformat(), waiting_on=WaitingOn.THROTTLE, publish=True)
            await workflow.sleep(frees - workflow.now(), summary=f"SMS quota full until {frees.isoformat()}")

    async def _send(self, activity: Callable[..., Any], message: SendInput) -> Any:
        """The first attempt as a local activity; the others as one activity under the retry policy.
        Where the channel has a rate limit, every attempt is an activity (activities/rate_limit.py)."""
        assert self.spec is not None
        retry = self.spec.retry
        first = replace(
            message,
            context=AttemptContext(first_attempt=1, max_attempts=retry.max_attempts, maybe_rerun=self.maybe_rerun),
        )
        if not self.spec.first_attempt_local:
            return await self._queued(activity, first)
        attempt = asyncio.ensure_future(
            workflow.execute_local_activity_method(
                activity,
                first,
                start_to_close_timeout=timedelta(seconds=self.spec.attempt_timeout_s),
                retry_policy=RetryPolicy(maximum_attempts=1),
                summary=f"attempt 1 of {retry.max_attempts}",
            )
        )
        cancelled = False
        try:
            try:
                return await asyncio.shield(attempt)
            except asyncio.CancelledError:
                # A send in flight cannot be taken back: wait for its real outcome, so a job never
                # says "cancelled" about a message that went out. A failed attempt ends it cancelled.
                cancelled = True
                return await attempt
        except (ActivityError, ApplicationError) as err:
            if cancelled or is_cancelled_exception(err):
                raise asyncio.CancelledError() from err
            cause, error = failure_cause(err), failure_message(err)
            if _declined(cause) and workflow.patched(RATE_LIMITED_FIRST_ATTEMPT):
                # A rate-limited worker sent nothing and logged no attempt: attempt 1 onwards go
                # through the task queue, whose rate limit counts them.
                return await self._queued(activity, first)
            deliveries = attempt_log(cause)
            # The attempts made: one, or more where the log has first attempts cut short by a crash
            # (each ran again as the first; activities/attempt_log.py). Those count against the limit.
            done, schedule = 1, retry
            if any(d.interrupted for d in deliveries) and workflow.patched(INTERRUPTED_FIRST_ATTEMPT):
                done = max(d.attempt for d in deliveries)
                for _ in range(done - 1):
                    schedule = schedule.after_first()
            if retry.max_attempts <= done or (isinstance(cause, ApplicationError) and cause.non_retryable):
                raise SendFailed(error, deliveries) from err
            wait = (cause.next_retry_delay if isinstance(cause, ApplicationError) else None) or schedule.first_wait()
        # Waiting out the first backoff: the one change on the retry path the API reads from the memo.
        self._backing_off(done, error, deliveries, wait)
        summary = f"backoff before attempt {done + 1}"
        if workflow.patched(RELEASABLE_WAITS):
            await self._wait(wait, summary)
        else:
            await workflow.sleep(wait, summary=summary)
        self._change(phase=Phase.PROCESSING, not_before=None, waiting_on=None)
        if workflow.patched(RELEASABLE_BACKOFFS):
            # Each attempt an activity of its own, every backoff a timer a release ends.
            return await self._one_by_one(activity, message, done + 1, deliveries)
        rest = replace(
            message, context=AttemptContext(first_attempt=done + 1, max_attempts=retry.max_attempts, earlier=deliveries)
        )
        return await self._activity(
            activity,
            rest,
            send_options(self.spec, schedule.after_first())
            | {"summary": f"attempts {done + 1}-{retry.max_attempts} of {retry.max_attempts}"},
        )

    async def _queued(self, activity: Callable[..., Any], first: SendInput) -> Any:
        """Every attempt an activity, through the task queue, on a channel with a rate limit. The first one
        hands a failure back to the workflow at once (`own_backoff`: no command of its own, the same
        activity as before), which then waits out the backoff and schedules the next (`_one_by_one`)."""
        assert self.spec is not None
        attempts = self.spec.retry.max_attempts
        first = replace(first, context=replace(first.context, own_backoff=True))
        options = send_options(self.spec, rate_limited=True) | {"summary": f"attempts 1-{attempts} of {attempts}"}
        try:
            return await workflow.execute_activity_method(activity, first, **options)
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise asyncio.CancelledError() from err
            cause, error = failure_cause(err), failure_message(err)
            deliveries = attempt_log(cause, first.context)
            # Runs from before the patch had Temporal retry this activity: its failure was the last attempt's.
            if not workflow.patched(RELEASABLE_BACKOFFS):
                raise SendFailed(error, deliveries) from err
            wait = self._next_wait(cause, deliveries, 1)
            if wait is None:
                raise SendFailed(error, deliveries) from err
        done = _attempts_made(deliveries, 1)
        await self._back_off(done, error, deliveries, wait)
        return await self._one_by_one(activity, first, done + 1, deliveries, rate_limited=True)

    async def _one_by_one(
        self,
        activity: Callable[..., Any],
        message: SendInput,
        attempt: int,
        deliveries: list[AttemptRecord],
        rate_limited: bool = False,
    ) -> Any:
        """Attempts `attempt` onwards, each an activity of its own whose failure comes back at once; the
        backoff between two is a durable timer of the workflow that a release ends (`_back_off`). The
        attempt log travels in each attempt's input. Temporal still retries an attempt lost with its worker
        (a missing heartbeat, a timeout) or handed back at a shutdown, under the policy of what is left."""
        assert self.spec is not None
        retry = self.spec.retry
        while True:
            context = AttemptContext(
                first_attempt=attempt, max_attempts=retry.max_attempts, earlier=deliveries, own_backoff=True
            )
            options = send_options(self.spec, retry.from_attempt(attempt), rate_limited=rate_limited)
            try:
                return await workflow.execute_activity_method(
                    activity,
                    replace(message, context=context),
                    **options,
                    summary=f"attempt {attempt} of {retry.max_attempts}",
                )
            except ActivityError as err:
                if is_cancelled_exception(err):
                    raise asyncio.CancelledError() from err
                cause, error = failure_cause(err), failure_message(err)
                deliveries = attempt_log(cause, context)
                wait = self._next_wait(cause, deliveries, attempt)
                if wait is None:
                    raise SendFailed(error, deliveries) from err
            done = _attempts_made(deliveries, attempt)
            await self._back_off(done, error, deliveries, wait)
            attempt = done + 1

    def _next_wait(self, cause: BaseException, deliveries: list[AttemptRecord], attempt: int) -> timedelta | None:
        """How long to wait before the next attempt after a failed one (started as `attempt`); None when
        there is none: the limit is reached, or the error is one retrying cannot fix."""
        assert self.spec is not None
        retry = self.spec.retry
        done = _attempts_made(deliveries, attempt)
        last = deliveries[-1] if deliveries else None
        if last is not None and last.attempt == done:
            retryable = last.retryable  # the attempt's own record (its error travels as non-retryable)
        else:
            retryable = not (isinstance(cause, ApplicationError) and cause.non_retryable)
        if done >= retry.max_attempts or not retryable:
            return None
        # A Retry-After (429/503) sets the wait, as it set the retry policy's next one.
        delay = cause.next_retry_delay if isinstance(cause, ApplicationError) else None
        return delay or retry.wait_after(done)

    def _backing_off(self, done: int, error: str, deliveries: list[AttemptRecord], wait: timedelta) -> None:
        """`delayed` after attempt `done` until the next, in the memo the API reads (published at once)."""
        self._change(
            phase=Phase.DELAYED,
            attempts=done,
            error=error,
            deliveries=deliveries,
            not_before=(workflow.now() + wait).isoformat(),
            waiting_on=WaitingOn.BACKOFF,
            publish=True,
        )

    async def _back_off(self, done: int, error: str, deliveries: list[AttemptRecord], wait: timedelta) -> None:
        """Wait out the backoff after attempt `done`, `delayed` until the next (the memo says so), on a
        timer a release ends: then the next attempt starts at once."""
        # A release that came while the attempt ran (the API read the job as waiting just before) is spent.
        self.released = False
        self._backing_off(done, error, deliveries, wait)
        await self._wait(wait, f"backoff before attempt {done + 1}")
        self._change(phase=Phase.PROCESSING, not_before=None, waiting_on=None)

    async def _activity(self, activity: Callable[..., Any], message: SendInput, options: dict[str, Any]) -> Any:
        try:
            return await workflow.execute_activity_method(activity, message, **options)
        except ActivityError as err:
            if is_cancelled_exception(err):
                # Cancelled while waiting out a retry backoff: the activity was cancelled with us.
                raise asyncio.CancelledError() from err
            deliveries = attempt_log(failure_cause(err), message.context)
            raise SendFailed(failure_message(err), deliveries) from err

    async def _start_then(self, then: FollowUp) -> None:
        """Start the `then` follow-up as a job of its own: a child named `<jobId>-then`, with the memo,
        search attributes and summary any job starts with (common/jobs.py), that outlives this run."""
        assert self.state is not None
        request, child_id = then.request, then_id(self.state.job_id)
        start = start_options(request, then.priority, now=workflow.now())
        try:
            await workflow.start_child_workflow(
                start.workflow,
                request,
                id=child_id,
                task_queue=start.task_queue,
                parent_close_policy=ParentClosePolicy.ABANDON,
                memo=start.memo,
                search_attributes=start.search_attributes,
                priority=start.priority,
                static_summary=start.summary,
                static_details=start.details,
            )
        except WorkflowAlreadyStartedError:
            # The follow-up of an earlier run of this job id is still running (a run started again by hand).
            log_event(
                "then.skipped",
                log=workflow.logger,
                job_id=self.state.job_id,
                next=child_id,
                reason="a follow-up with this id is already running",
            )
            return
        log_event("then.started", log=workflow.logger, job_id=self.state.job_id, next=child_id)
        self._change(next=child_id)

    async def _call_back(self) -> None:
        """POST the final state to the job's webhookUrl, as a child workflow with its own retries."""
        state = self.state
        if not (self.spec and self.spec.callback_url and state and state.callback):
            return
        # The job is final but its run goes on while the callback is delivered: say so in the memo.
        self._publish()
        try:
            outcome: CallbackState = await workflow.execute_child_workflow(
                CallbackWorkflow.run,
                WebhookRequest(
                    url=self.spec.callback_url, data=callback_body(state, _now()), webhook_id=f"{state.job_id}-callback"
                ),
                id=f"{state.job_id}-callback",
                task_queue=TASK_QUEUES["webhook"],
                static_summary=f"result callback of {state.job_id} ({state.phase.value})",
            )
        except ChildWorkflowError as err:
            outcome = CallbackState(url=self.spec.callback_url, status="failed", error=failure_message(err))
        self._change(callback=outcome)

    # ---- state -------------------------------------------------------------------------
    def _change(self, publish: bool = False, **changes: Any) -> None:
        assert self.state is not None
        self.state = replace(self.state, updated_at=_now(), **changes)
        if publish:
            self._publish()

    def _decided(self, rule: str, outcome: str, until: str | None = None) -> None:
        """One more entry of the job's `decisions`: why it went out, waited, or did not."""
        assert self.state is not None
        decision = Decision(at=_now(), rule=rule, outcome=outcome, until=until)
        self._change(decisions=[*self.state.decisions, decision])

    def _end(self, phase: Phase, **changes: Any) -> None:
        assert self.state is not None
        deliveries = changes.get("deliveries", self.state.deliveries)
        attempts = max([self.state.attempts] + [d.attempt for d in deliveries])
        self._change(phase=phase, attempts=attempts, **changes)
        # The final status, for visibility queries (the DLQ, the stats, the Web UI's filters).
        workflow.upsert_search_attributes([JOB_STATUS_KEY.value_set(phase.value)])
        log_event(
            f"job.{phase.value}",
            log=workflow.logger,
            job_id=self.state.job_id,
            kind=self.state.kind,
            attempts=self.state.attempts,
            error=self.state.error,
        )
        count_job_finished(self.state.kind, phase.value)

    def _publish(self) -> None:
        workflow.upsert_memo({STATE_MEMO_KEY: self.state})


def _now() -> str:
    return workflow.now().isoformat()


def _digest_item(job_id: str, message: SendInput) -> DigestItem:
    """What a digest says of a job: an email's subject, or a typed notification's type and data."""
    if isinstance(message, TypedEmail):
        return DigestItem(job_id=job_id, joined_at=_now(), type=message.type, data=message.data)
    subject = message.subject if isinstance(message, EmailMessage) else None
    return DigestItem(job_id=job_id, joined_at=_now(), subject=subject)


def _attempts_made(deliveries: list[AttemptRecord], attempt: int) -> int:
    """The attempts made once attempt `attempt` failed: more where the log counts more (a lost one)."""
    return max([attempt, *(d.attempt for d in deliveries)])


def _declined(cause: BaseException) -> bool:
    """A first attempt that a rate-limited worker declined to run locally (activities/rate_limit.py)."""
    return isinstance(cause, ApplicationError) and cause.type == FIRST_ATTEMPT_DECLINED


class TrackedJobWorkflow:
    """Base of the job workflows: the lifecycle, and what every job answers besides its run."""

    def __init__(self) -> None:
        self.job: JobTracker | JobTrackerV0 = JobTracker()

    # Histories from before LEAN_LIFECYCLE returned the send's result (Any), not the state.
    async def run_job(
        self,
        spec: JobSpec,
        activity: Callable[..., Any],
        message: SendInput,
        take_slot: Callable[[int], Awaitable[QuotaAnswer]] | None = None,
    ) -> JobState | Any:
        # A spec that names its lifecycle spares the run the patch's marker; one from before the field
        # (an old run replaying, an old schedule's or follow-up's spec) asks the patch, as it always did.
        if spec.lifecycle >= LEAN_LIFECYCLE_INPUT or workflow.patched(LEAN_LIFECYCLE):
            assert isinstance(self.job, JobTracker)  # (only the unpatched path below replaces it)
            return await self.job.run(spec, activity, message, take_slot)
        self.job = JobTrackerV0()
        return await self.job.run(spec, lambda options: workflow.execute_activity_method(activity, message, **options))

    @workflow.signal(name=ATTEMPT_SIGNAL)
    def attempt_finished(self, record: AttemptRecord) -> None:
        # Only runs started before LEAN_LIFECYCLE are told of their attempts this way.
        if isinstance(self.job, JobTrackerV0):
            self.job.record_attempt(record)

    @workflow.signal(name=RELEASE_SIGNAL)
    def release(self) -> None:
        """POST /jobs/{id}/release before RELEASE_WAIT_SIGNAL: the job's wait ends now (a run may hold one)."""
        if isinstance(self.job, JobTracker):
            self.job.release()

    @workflow.signal(name=RELEASE_WAIT_SIGNAL)
    def release_wait(self, seen: ReleaseSeen) -> None:
        """POST /jobs/{id}/release: the wait the API read the job in (delay, deliverAt, quiet hours, a digest,
        a retry backoff) ends now; if that wait is over by the time the signal arrives, nothing happens."""
        if isinstance(self.job, JobTracker):
            if self.job.waits_as_seen(seen):
                self.job.release()
            else:
                log_event("release.late", log=workflow.logger, job_id=workflow.info().workflow_id, seen=seen.attempts)

    @workflow.signal(name=PREFERENCES_CHANGED_SIGNAL)
    def preferences_changed(self) -> None:
        """The user's workflow: their preferences changed; a job waiting on them decides again now."""
        if isinstance(self.job, JobTracker):
            self.job.preferences_changed = True

    @workflow.signal(name=DIGEST_JOINED_SIGNAL)
    def digest_joined(self, joined: DigestJoined) -> None:
        """The digest the job joined: its id, and when it goes out (workflows/digest.py)."""
        if isinstance(self.job, JobTracker):
            self.job.digest_joined = joined

    @workflow.signal(name=DIGEST_SENT_SIGNAL)
    def digest_sent(self, digest_id: str) -> None:
        """The digest the job waited in went out (its id; "": it could not be sent, the job goes alone)."""
        if isinstance(self.job, JobTracker):
            self.job.digest_sent = digest_id

    @workflow.query(name="state")
    def state(self) -> JobState | None:
        return self.job.state
