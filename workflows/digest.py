"""A user's digest for one topic (DESIGN.md, "Preferences, quiet hours and digests"): an entity workflow
per tenant, user and topic (id `digest-<digest of them>`, common/models.py), on ENTITY_TASK_QUEUE.

A job whose topic the user digests joins with a `join` signal, sent with start by its join_digest local
activity (activities/digests.py); the digest answers it with `digest_joined` (the digest id and when it
goes out). The first item opens a digest (`<workflow id>-<n>`), due at the item's `until`; at that time,
or at once on `send_now` (POST /users/{userId}/digests/{digestId}/send), one email lists every item in the
order they joined (the send_digest activity, on the email queue), and each item's job is told
`digest_sent`: it completes with `result.digestId`. A job that is cancelled, released, or no longer
digested (the digest turned off) leaves with the `take_out` update (its leave_digest local activity), which
answers whether it was taken out of the open digest; once the digest's send has begun, it is not: the job
waits to be told and goes out in the digest, never also alone. (Jobs from before that update leave with the
`leave` signal.) A digest holds at most MAX_DIGEST_ITEMS: the item
that fills it sends it at once, and the next one opens the next digest.

The workflow never ends on its own: after each digest, once Temporal suggests it or after
MAX_SIGNALS signals, it continues as new carrying the open digest, so its history stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.digests import DigestActivities
    from common.logs import log_event
    from common.models import (
        DIGEST_JOIN_SIGNAL,
        DIGEST_JOINED_SIGNAL,
        DIGEST_LEAVE_SIGNAL,
        DIGEST_SEND_SIGNAL,
        DIGEST_SENT_SIGNAL,
        DIGEST_TAKE_OUT_UPDATE,
        MAX_DIGEST_ITEMS,
        TASK_QUEUES,
        DigestEmail,
        DigestInfo,
        DigestInput,
        DigestItem,
        DigestJoin,
        DigestJoined,
        DigestLeft,
    )
    from common.names import DIGEST_WORKFLOW

# Signals per run before it continues as new (each adds an event, and each join a signal back).
MAX_SIGNALS = 2000
# A digest's send: the email path's retries, as long as the SMTP relay needs.
SEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=5))
SEND_TIMEOUT = timedelta(seconds=60)


@workflow.defn(name=DIGEST_WORKFLOW)
class DigestWorkflow:
    @workflow.init
    def __init__(self, input: DigestInput) -> None:
        # In __init__, so the join delivered with the start finds the carried digest.
        self.input = input
        self.seq = input.seq
        self.items: list[DigestItem] = list(input.items)
        self.next_at: str | None = input.next_at
        self.send_now: str | None = None
        self.signals = 0
        self.max_signals = input.signals_per_run or MAX_SIGNALS
        self.max_items = min(input.max_items or MAX_DIGEST_ITEMS, MAX_DIGEST_ITEMS)
        self.to_answer: list[str] = list(input.to_answer)
        # The items of the digest whose send has begun, until they are told (job id: digest id).
        self.sending: dict[str, str] = {}

    @property
    def digest_id(self) -> str:
        return f"{workflow.info().workflow_id}-{self.seq}"

    @workflow.run
    async def run(self, input: DigestInput) -> None:
        while self.signals < self.max_signals and not workflow.info().is_continue_as_new_suggested():
            await self._answer_joins()
            if self._due():
                await self._send()
                continue
            timeout = None
            if self.items and self.next_at is not None:
                timeout = max(datetime.fromisoformat(self.next_at) - workflow.now(), timedelta(0))
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: bool(self.to_answer) or self._due() or self.signals >= self.max_signals,
                    timeout=timeout,
                    timeout_summary=f"digest {self.digest_id} goes at {self.next_at}",
                )
        await self._answer_joins()
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            DigestInput(
                user_id=input.user_id,
                scope=input.scope,
                topic=input.topic,
                tenant=input.tenant,
                seq=self.seq,
                items=self.items,
                next_at=self.next_at,
                to_answer=self.to_answer,
                signals_per_run=input.signals_per_run,
                max_items=input.max_items,
            )
        )

    def _due(self) -> bool:
        if not self.items:
            return False
        if self.send_now == self.digest_id or len(self.items) >= self.max_items:
            return True
        return self.next_at is not None and datetime.fromisoformat(self.next_at) <= workflow.now()

    async def _answer_joins(self) -> None:
        """Tell each job that joined which digest it waits in, and when it goes."""
        jobs, self.to_answer = self.to_answer, []
        joined = DigestJoined(digest_id=self.digest_id, next_at=self.next_at or "")
        await asyncio.gather(*(self._signal(job_id, DIGEST_JOINED_SIGNAL, joined) for job_id in jobs))

    async def _send(self) -> None:
        """One email listing the items in order; then each item's job is told, and the next digest opens."""
        items, digest_id = self.items[: self.max_items], self.digest_id
        self.items, self.next_at, self.send_now = self.items[self.max_items :], None, None
        self.seq += 1
        if self.items:
            # Joined after the digest filled: they open the next one, due at the first one's `until`.
            self.next_at = self.items[0].until or workflow.now().isoformat()
            self.to_answer += [i.job_id for i in self.items]
        email = DigestEmail(
            user_id=self.input.user_id, scope=self.input.scope, topic=self.input.topic, digest_id=digest_id, items=items
        )
        self.sending = {i.job_id: digest_id for i in items}
        try:
            await self._send_email(email, digest_id, items)
        finally:
            self.sending = {}

    async def _send_email(self, email: DigestEmail, digest_id: str, items: list[DigestItem]) -> None:
        try:
            await workflow.execute_activity_method(
                DigestActivities.send_digest,
                email,
                task_queue=TASK_QUEUES["email"],
                start_to_close_timeout=SEND_TIMEOUT,
                retry_policy=SEND_RETRY,
                summary=f"digest {digest_id}: {len(items)} items",
            )
        except ActivityError as exc:
            # What retrying cannot fix (an unknown user, no address): the items go out one by one.
            log_event("digest.failed", log=workflow.logger, digest_id=digest_id, error=str(exc.cause or exc))
            await asyncio.gather(*(self._signal(i.job_id, DIGEST_SENT_SIGNAL, "") for i in items))
            return
        log_event("digest.sent", log=workflow.logger, digest_id=digest_id, items=len(items))
        await asyncio.gather(*(self._signal(i.job_id, DIGEST_SENT_SIGNAL, digest_id) for i in items))

    async def _signal(self, job_id: str, name: str, arg: object) -> None:
        try:
            await workflow.get_external_workflow_handle(job_id).signal(name, arg)
        except FailureError as exc:  # the job has ended meanwhile
            log_event("digest.job_gone", log=workflow.logger, job_id=job_id, error=str(exc))

    @workflow.signal(name=DIGEST_JOIN_SIGNAL)
    def join(self, join: DigestJoin) -> None:
        self.signals += 1
        if all(i.job_id != join.item.job_id for i in self.items):
            if not self.items:
                self.next_at = join.until
            self.items.append(replace(join.item, until=join.until))
        self.to_answer.append(join.item.job_id)

    @workflow.signal(name=DIGEST_LEAVE_SIGNAL)
    def leave(self, job_id: str) -> None:
        self.signals += 1
        self.items = [i for i in self.items if i.job_id != job_id]

    @workflow.update(name=DIGEST_TAKE_OUT_UPDATE)
    def take_out(self, job_id: str) -> DigestLeft:
        """A job leaves (cancelled, released, no longer digested): taken out of the open digest, or not, being
        in the digest whose send has begun (or told already): then it waits for `digest_sent`."""
        self.signals += 1
        if job_id in self.sending:
            return DigestLeft(taken=False, digest_id=self.sending[job_id])
        held = any(i.job_id == job_id for i in self.items)
        self.items = [i for i in self.items if i.job_id != job_id]
        return DigestLeft(taken=held)

    @workflow.signal(name=DIGEST_SEND_SIGNAL)
    def send(self, digest_id: str) -> None:
        """POST /users/{userId}/digests/{digestId}/send: the open digest goes now (another id: none)."""
        self.signals += 1
        self.send_now = digest_id

    @workflow.query(name="digest")
    def open_digest(self) -> DigestInfo | None:
        """The open digest: its items (the first max_items: any after them open the next digest) by job id, in
        the order they joined. A query: it reads the state and adds nothing to the history."""
        if not self.items:
            return None
        held = self.items[: self.max_items]
        return DigestInfo(
            digest_id=self.digest_id,
            topic=self.input.topic,
            items=len(held),
            next_at=self.next_at,
            job_ids=[i.job_id for i in held],
        )
