"""Notifications: the /notify family (status in `/notifications/{id}` words) and typed notifications.

POST /notifications sends a user the email of a type from its templates. The API checks the body (the
type's required `data`) and starts the job; the user's address is resolved and the templates rendered
when the email is sent (activities/users.py), so an unknown user or an opt-out fails the job with a
reason that says so. `password-reset` runs at priority 1, the others at 5. GET /notifications/{jobId}
and every other status route answer for these jobs like for any other.
"""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Depends

from api.core.auth import CallerTenant, Gateway, SettingsDep, require_client_key
from api.core.errors import CREATE_ERRORS, SMS_CREATE_ERRORS, errors
from api.jobs.service import load_job, notification_body
from api.jobs.starter import Jobs, StartedJob, check_target
from api.notifications.models import (
    TYPED_TYPES,
    Notification,
    NotificationAccepted,
    NotifyEmail,
    NotifySms,
    NotifyWebhook,
    TypedNotification,
    TypedNotificationAccepted,
)
from common.jobs import typed_email_job
from common.models import Audience
from common.vocabulary import NOTIFICATION_STATUS

router = APIRouter(tags=["notifications"], dependencies=[Depends(require_client_key)])

ACCEPTED = "The notification is durably recorded in Temporal"


def _accepted(job: StartedJob) -> NotificationAccepted:
    return NotificationAccepted(
        notificationId=job.job_id, status=NOTIFICATION_STATUS[job.phase], statusUrl=f"/notifications/{job.job_id}"
    )


@router.post(
    "/notify/email", status_code=202, summary="Send an email", response_description=ACCEPTED, responses=CREATE_ERRORS
)
async def notify_email(body: NotifyEmail, jobs: Jobs) -> NotificationAccepted:
    return _accepted(await jobs.start("email", "notify", body))


@router.post(
    "/notify/sms", status_code=202, summary="Send an SMS", response_description=ACCEPTED, responses=SMS_CREATE_ERRORS
)
async def notify_sms(body: NotifySms, jobs: Jobs) -> NotificationAccepted:
    # Throttled (JobStarter.start, api/jobs/throttle.py): over HERALD_SMS_PER_HOUR for the number, a 429, no job.
    return _accepted(await jobs.start("sms", "notify", body))


@router.post(
    "/notify/webhook",
    status_code=202,
    summary="POST `data` to `url` as a signed webhook",
    response_description=ACCEPTED,
    responses=CREATE_ERRORS,
)
async def notify_webhook(body: NotifyWebhook, jobs: Jobs, settings: SettingsDep) -> NotificationAccepted:
    check_target("url", body.url, settings)
    return _accepted(await jobs.start("webhook", "notify", body))


@router.get(
    "/notifications/{notification_id}",
    summary="A notification's state: queued, processing, success, ...",
    response_description="The notification's state, attempt log and callback",
    responses=errors(401, 404, 502, 503),
    response_model_exclude_unset=True,
)
async def notification(notification_id: str, gateway: Gateway, tenant: CallerTenant) -> Notification:
    view = await load_job(await gateway.client(), notification_id, tenant)
    return Notification.model_validate(notification_body(view))


# Its own router: the app includes it after the users' routes (the order of docs/openapi.json).
typed_router = APIRouter(tags=["notifications"], dependencies=[Depends(require_client_key)])


@typed_router.post(
    "/notifications",
    status_code=202,
    summary="Send a user a typed notification (an email from templates)",
    response_description=ACCEPTED,
    responses=CREATE_ERRORS,
)
async def create_typed_notification(body: TypedNotification, jobs: Jobs) -> TypedNotificationAccepted:
    options = body.model_copy(update={"priority": TYPED_TYPES[body.type].priority})
    # Decided by the user's preferences when it is sent: its topic is its type unless the body names one.
    audience = Audience(
        user_id=body.userId,
        channel="email",
        topic=body.topic or body.type,
        critical=body.critical or TYPED_TYPES[body.type].critical,
    )
    job = await jobs.start(
        "email",
        "notify",
        options,
        lambda spec: typed_email_job(replace(spec, audience=audience), body.type, body.userId, body.data or {}),
    )
    return TypedNotificationAccepted(jobId=job.job_id, statusUrl=f"/notifications/{job.job_id}")
