"""One user's contact data, kept in Temporal: an entity workflow per user (id `user-<digest of the
userId>`: a userId may be an email address, and workflow ids are not encrypted).

PUT /users/{userId} is an update-with-start of the `put` update (the first PUT starts the
workflow), GET /users/{userId} and a typed notification's send read it with the `profile` query.
The workflow never ends on its own: it continues as new, carrying the profile, once Temporal
suggests it or after MAX_UPDATES updates, so its history stays bounded.

It also keeps the jobs waiting on the user's preferences (quiet hours): each registers with a
`job_waiting` signal (workflows/job_tracking.py). A `put` that changes the preferences hands them to the
run, which signals each `preferences_changed` at once (they decide again: sent now, suppressed, or
waiting on) and forgets them: one still waiting registers again. No polling. At most MAX_WAITING are
kept (the oldest dropped: it still ends its wait on its own timer), and carried over a continue-as-new.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from common.logs import log_event
    from common.models import JOB_WAITING_SIGNAL, PREFERENCES_CHANGED_SIGNAL, UserInput, UserProfile
    from common.names import USER_WORKFLOW

from workflows.patches import USER_TELLS_JOBS

# Updates per run before it continues as new (each update adds a handful of events).
MAX_UPDATES = 500
# Jobs kept as waiting on the user's preferences; and registrations (signals) per run before it continues
# as new, like updates.
MAX_WAITING = 1000
MAX_REGISTRATIONS = 2000


@workflow.defn(name=USER_WORKFLOW)
class UserWorkflow:
    @workflow.init
    def __init__(self, input: UserInput) -> None:
        # In __init__, so an update delivered with the start finds the carried profile.
        self.user_id = input.user_id
        self.profile: UserProfile | None = input.profile
        self.updates = 0
        # Job ids waiting on the user's preferences, oldest first; and those to tell of a change.
        self.waiting: list[str] = list(input.waiting)
        self.to_tell: list[str] = list(input.to_tell)
        self.registrations = 0

    @workflow.run
    async def run(self, input: UserInput) -> None:
        while True:
            await workflow.wait_condition(
                lambda: (
                    bool(self.to_tell)
                    or self.updates >= MAX_UPDATES
                    or self.registrations >= MAX_REGISTRATIONS
                    or workflow.info().is_continue_as_new_suggested()
                )
            )
            if not self.to_tell:
                break
            jobs, self.to_tell = self.to_tell, []
            # Only runs that jobs registered with reach it (none before the patch).
            if workflow.patched(USER_TELLS_JOBS):
                await asyncio.gather(*(self._tell(job_id) for job_id in jobs))
        # No update may be cut off by the continue-as-new.
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            UserInput(user_id=self.user_id, profile=self.profile, waiting=self.waiting, to_tell=self.to_tell)
        )

    async def _tell(self, job_id: str) -> None:
        try:
            await workflow.get_external_workflow_handle(job_id).signal(PREFERENCES_CHANGED_SIGNAL)
        except FailureError as exc:  # the job has ended meanwhile
            log_event("preferences.job_gone", log=workflow.logger, job_id=job_id, error=str(exc))

    @workflow.signal(name=JOB_WAITING_SIGNAL)
    def job_waiting(self, job_id: str) -> None:
        """A job waits on the user's preferences (quiet hours): told at once when they change."""
        self.registrations += 1
        if job_id in self.waiting:
            self.waiting.remove(job_id)
        self.waiting.append(job_id)
        del self.waiting[:-MAX_WAITING]

    @workflow.update(name="put")
    def put(self, profile: UserProfile) -> UserProfile:
        """Replace the profile (PUT semantics); the timestamps are the workflow's."""
        now = workflow.now().isoformat()
        created = self.profile.created_at if self.profile else now
        before = self.profile.preferences() if self.profile else None
        self.profile = replace(profile, user_id=self.user_id, created_at=created, updated_at=now)
        self.updates += 1
        if self.waiting and self.profile.preferences() != before:
            # The run tells them (a signal each), so the PUT's answer does not wait on it.
            self.to_tell += [job_id for job_id in self.waiting if job_id not in self.to_tell]
            self.waiting = []
        return self.profile

    @put.validator
    def _check(self, profile: UserProfile) -> None:
        # Refused before it is written to history (the API checks as much; this guards other callers).
        if not (profile.email or profile.phone):
            raise ValueError("a user needs an email or a phone")

    @workflow.query(name="profile")
    def get_profile(self) -> UserProfile | None:
        return self.profile
