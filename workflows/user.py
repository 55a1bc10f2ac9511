"""One user's contact data, kept in Temporal: an entity workflow per user (id `user-<digest of the
userId>`: a userId may be an email address, and workflow ids are not encrypted).

PUT /users/{userId} is an update-with-start of the `put` update (the first PUT starts the
workflow), GET /users/{userId} and a typed notification's send read it with the `profile` query.
The workflow never ends on its own: it continues as new, carrying the profile, once Temporal
suggests it or after MAX_UPDATES updates, so its history stays bounded.
"""

from __future__ import annotations

from dataclasses import replace

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from common.models import UserInput, UserProfile
    from common.names import USER_WORKFLOW

# Updates per run before it continues as new (each update adds a handful of events).
MAX_UPDATES = 500


@workflow.defn(name=USER_WORKFLOW)
class UserWorkflow:
    @workflow.init
    def __init__(self, input: UserInput) -> None:
        # In __init__, so an update delivered with the start finds the carried profile.
        self.user_id = input.user_id
        self.profile: UserProfile | None = input.profile
        self.updates = 0

    @workflow.run
    async def run(self, input: UserInput) -> None:
        await workflow.wait_condition(
            lambda: self.updates >= MAX_UPDATES or workflow.info().is_continue_as_new_suggested()
        )
        # No update may be cut off by the continue-as-new.
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(UserInput(user_id=self.user_id, profile=self.profile))

    @workflow.update(name="put")
    def put(self, profile: UserProfile) -> UserProfile:
        """Replace the profile (PUT semantics); the timestamps are the workflow's."""
        now = workflow.now().isoformat()
        created = self.profile.created_at if self.profile else now
        self.profile = replace(profile, user_id=self.user_id, created_at=created, updated_at=now)
        self.updates += 1
        return self.profile

    @put.validator
    def _check(self, profile: UserProfile) -> None:
        # Refused before it is written to history (the API checks as much; this guards other callers).
        if not (profile.email or profile.phone):
            raise ValueError("a user needs an email or a phone")

    @workflow.query(name="profile")
    def get_profile(self) -> UserProfile | None:
        return self.profile
