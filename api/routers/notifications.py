"""Typed notifications: POST /notifications sends a user the email of a type from its templates.

The API checks the body (the type's required `data`) and starts the job; the user's address is
resolved and the templates rendered when the email is sent (activities/users.py), so an unknown
user or an opt-out fails the job with a reason that says so. `password-reset` runs at priority 1,
the others at 5. GET /notifications/{jobId} (api/routers/notify.py) and every other status route
answer for these jobs like for any other.
"""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Depends

from api.deps import Jobs, require_client_key
from api.responses import TypedNotificationAccepted, errors
from api.schemas import TypedNotification
from common.models import NotificationInput, TypedEmail, user_ref

router = APIRouter(tags=["notifications"], dependencies=[Depends(require_client_key)])

# Task-queue priority (1 is first): a password reset overtakes a backlog of the others.
PRIORITY = {"password-reset": 1, "welcome": 5, "order-confirmed": 5}


@router.post("/notifications", status_code=202, summary="Send a user a typed notification (an email from templates)",
             response_description="The notification is durably recorded in Temporal",
             responses=errors(400, 401, 413, 502, 503))
async def create_typed_notification(body: TypedNotification, jobs: Jobs) -> TypedNotificationAccepted:
    options = body.model_copy(update={"priority": PRIORITY[body.type]})

    def build(spec):
        # The HeraldUser search attribute: a user's notifications are listed by it (reports).
        spec = replace(spec, user_ref=user_ref(body.userId))
        return NotificationInput(job=spec, typed=TypedEmail(type=body.type, user_id=body.userId, data=body.data or {},
                                                            idempotency_key=spec.job_id))

    job = await jobs.start("email", "notify", options, None, build)
    return TypedNotificationAccepted(jobId=job.job_id, statusUrl=f"/notifications/{job.job_id}")
