"""How many SMS one key (a recipient number, or a user) was given in the last hour: an entity
workflow per key (id `sms-quota-<digest>`; never the number itself), driven by api/jobs/throttle.py.

`reserve` grants `count` slots when the rolling window has room for them, else answers how long
until it has; `release` takes a reservation back (the API reserves a number and a user in turn
and releases the first when the second is refused). Time is the workflow's (`workflow.now()`):
the server's clock, the same for every API replica, and skipped in time-skipping tests.

The workflow ends itself once it has been idle for a whole window (its slots have all expired by
then, so nothing is lost; the next SMS starts it again), and continues as new, carrying its
slots, when Temporal suggests it or after MAX_UPDATES updates.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from common.models import QuotaAnswer, QuotaInput, QuotaRequest, QuotaSlot
    from common.names import SMS_QUOTA_WORKFLOW

MAX_UPDATES = 1000
DEFAULT_WINDOW = timedelta(hours=1)


@workflow.defn(name=SMS_QUOTA_WORKFLOW)
class SmsQuotaWorkflow:
    @workflow.init
    def __init__(self, input: QuotaInput) -> None:
        self.key = input.key
        self.slots: list[QuotaSlot] = list(input.slots)
        self.window = DEFAULT_WINDOW
        self.updates = 0
        self.touched = False
        self.last_touched = workflow.now()

    @workflow.run
    async def run(self, input: QuotaInput) -> None:
        while True:
            if self._continue_as_new_due():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(QuotaInput(key=self.key, slots=self._live(workflow.now())))
            idle_left = self.last_touched + self.window - workflow.now()
            if idle_left <= timedelta(0):
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self.touched and not self._live(workflow.now()):
                    return  # idle for a whole window, nothing left to count
            self.touched = False
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self.touched or self._continue_as_new_due(), timeout=max(idle_left, timedelta(seconds=1))
                )

    def _continue_as_new_due(self) -> bool:
        return self.updates >= MAX_UPDATES or workflow.info().is_continue_as_new_suggested()

    def _live(self, now: datetime) -> list[QuotaSlot]:
        return [s for s in self.slots if datetime.fromisoformat(s.at) + self.window > now]

    def _touch(self, now: datetime) -> None:
        self.touched, self.last_touched = True, now
        self.updates += 1

    @workflow.update(name="reserve")
    def reserve(self, request: QuotaRequest) -> QuotaAnswer:
        now = workflow.now()
        self.window = timedelta(seconds=request.window_s)
        self.slots = self._live(now)
        self._touch(now)
        used = len(self.slots)
        if used + request.count <= request.limit:
            self.slots += [QuotaSlot(at=now.isoformat(), token=request.token)] * request.count
            return QuotaAnswer(granted=True, used=len(self.slots))
        if request.count > request.limit:
            frees = now + self.window  # never in one window; say "a window from now"
        else:
            # Slots are in time order: room for `count` once the oldest `used + count - limit` expire.
            frees = datetime.fromisoformat(self.slots[used + request.count - request.limit - 1].at) + self.window
        return QuotaAnswer(
            granted=False, used=used, retry_after_s=(frees - now).total_seconds(), retry_at=frees.isoformat()
        )

    @reserve.validator
    def _check(self, request: QuotaRequest) -> None:
        if request.count < 1 or request.limit < 1 or request.window_s <= 0:
            raise ValueError("a reservation takes count >= 1, limit >= 1 and a positive window")

    @workflow.update(name="release")
    def release(self, token: str) -> int:
        """Take a reservation's slots back; answers how many were released."""
        before = len(self.slots)
        self.slots = [s for s in self.slots if s.token != token]
        self._touch(workflow.now())
        return before - len(self.slots)

    @workflow.query(name="used")
    def used(self) -> int:
        return len(self._live(workflow.now()))
