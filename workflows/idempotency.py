"""One Idempotency-Key: who holds it, and the first answer, kept for a day (docs/api.md,
"Idempotency-Key").

The API sends every request that carries the key a `claim` update (with update-with-start, so
the first one starts this workflow). The first claim is told to proceed and holds the key for a
lease; a claim with another fingerprint (method, path, body) is a conflict; a claim with the same
fingerprint while the key is held waits here until the holder's `complete` signal brings the
answer (then replays it), or frees the key (a 5xx is not kept: the waiter proceeds), or until the
holder's lease runs out (its process died between claim and answer: the waiter takes over). So
twenty identical requests at once make one job, and every one of them gets its answer.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from common.idempotency import CLAIM_UPDATE, COMPLETE_SIGNAL, Claim, ClaimOutcome, Completion, KeyStart, KeyState
    from common.names import IDEMPOTENCY_KEY_WORKFLOW


@workflow.defn(name=IDEMPOTENCY_KEY_WORKFLOW)
class IdempotencyKeyWorkflow:
    # Set from the input before any handler runs: a claim or an answer in a continued run's first
    # task must see the key's carried state, not an empty one (it would proceed, and a job be made twice).
    @workflow.init
    def __init__(self, start: KeyStart) -> None:
        self.key = start.state or KeyState()

    @workflow.run
    async def run(self, start: KeyStart) -> None:
        until = _parse(start.until) if start.until else workflow.info().start_time + timedelta(seconds=start.keep_s)
        try:
            # The key is kept until then; a long-lived busy key moves to a fresh history first.
            await workflow.wait_condition(
                lambda: workflow.info().is_continue_as_new_suggested(),
                timeout=max(until - workflow.now(), timedelta(0)),
            )
        except TimeoutError:
            # Kept long enough: end (the key can be used again), after the claims still waiting.
            await workflow.wait_condition(workflow.all_handlers_finished)
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(KeyStart(keep_s=start.keep_s, until=until.isoformat(), state=self.key))

    @workflow.update(name=CLAIM_UPDATE)
    async def claim(self, claim: Claim) -> ClaimOutcome:
        while True:
            key = self.key
            if key.fingerprint is not None and key.fingerprint != claim.fingerprint:
                return ClaimOutcome("conflict")
            if key.answer is not None:
                return ClaimOutcome("replay", key.answer)
            now = workflow.now()
            if key.holder is None or key.holder == claim.request_id or now >= _parse(key.lease_until):
                key.fingerprint, key.holder = claim.fingerprint, claim.request_id
                key.lease_until = (now + timedelta(seconds=claim.lease_s)).isoformat()
                return ClaimOutcome("proceed")
            holder = key.holder
            # Until the holder answers or lets go, or its lease runs out.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self.key.holder != holder or self.key.answer is not None,  # noqa: B023 - awaited here
                    timeout=_parse(key.lease_until) - now,
                )

    @workflow.signal(name=COMPLETE_SIGNAL)
    def complete(self, done: Completion) -> None:
        key = self.key
        if key.answer is not None:
            return  # the first answer stays
        if done.answer is not None:
            # Kept even from a holder whose lease ran out: its job exists, so its answer is the one.
            key.answer, key.holder, key.lease_until = done.answer, None, None
        elif done.request_id == key.holder:
            # Not an answer to keep (a 5xx, a crash): the key is free again, for any request.
            key.fingerprint, key.holder, key.lease_until = None, None, None


def _parse(moment: str | None) -> datetime:
    assert moment is not None
    return datetime.fromisoformat(moment)
