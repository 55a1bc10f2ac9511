"""The preferences check of a notification about to be sent: the user's profile (their workflow,
workflows/user.py) read now, and decided by common/preferences.py.

A local activity of the job's run (workflows/job_tracking.py): no task on the channel's queue, whose
rate limit is for sends. The workflow passes its own clock, so the verdict is the same under skipped
test time, and the verdict is recorded in the run's history: a replay never asks again.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import activity
from temporalio.client import Client

from activities.users import load_user
from common.models import DeliveryCheck, Verdict
from common.preferences import decide

CHECK_PREFERENCES = "check_preferences"


class PreferenceActivities:
    def __init__(self, client: Client | None) -> None:
        self.client = client

    @activity.defn(name=CHECK_PREFERENCES)
    async def check_preferences(self, check: DeliveryCheck) -> Verdict:
        assert self.client is not None, "the preferences check needs the worker's Temporal client"
        profile = await load_user(self.client, check.user_id, check.scope)
        try:
            return decide(profile, check, datetime.fromisoformat(check.now))
        except ValueError:
            # A profile the API validated cannot hold a bad zone or time; one written otherwise is sent.
            return Verdict(outcome="send", rule="channel")
