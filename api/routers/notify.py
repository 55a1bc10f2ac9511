"""The /notify family: notifications, with status in `/notifications/{id}` words."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import Gateway, Jobs, SettingsDep, require_client_key
from api.job_starter import StartedJob, check_target, email_job, sms_job, webhook_job
from api.job_views import load_job, notification_body
from api.responses import Notification, NotificationAccepted, errors
from api.schemas import NotifyEmail, NotifySms, NotifyWebhook
from common.vocabulary import NOTIFICATION_STATUS

router = APIRouter(tags=["notifications"], dependencies=[Depends(require_client_key)])

ACCEPTED = "The notification is durably recorded in Temporal"
CREATE_ERRORS = errors(400, 401, 413, 502, 503)
SMS_ERRORS = errors(400, 401, 413, 429, 502, 503)


def _accepted(job: StartedJob) -> NotificationAccepted:
    return NotificationAccepted(notificationId=job.job_id, status=NOTIFICATION_STATUS[job.phase],
                                statusUrl=f"/notifications/{job.job_id}")


@router.post("/notify/email", status_code=202, summary="Send an email", response_description=ACCEPTED,
             responses=CREATE_ERRORS)
async def notify_email(body: NotifyEmail, jobs: Jobs) -> NotificationAccepted:
    return _accepted(await jobs.start("email", "notify", body, body.to,
                                      lambda spec: email_job(spec, body.to, body.subject, body.body)))


@router.post("/notify/sms", status_code=202, summary="Send an SMS", response_description=ACCEPTED,
             responses=SMS_ERRORS)
async def notify_sms(body: NotifySms, jobs: Jobs) -> NotificationAccepted:
    # Throttled (JobStarter.start, api/throttle.py): over HERALD_SMS_PER_HOUR for the number, a 429, no job.
    return _accepted(await jobs.start("sms", "notify", body, body.phone,
                                      lambda spec: sms_job(spec, body.phone, body.message)))


@router.post("/notify/webhook", status_code=202, summary="POST `data` to `url` as a signed webhook",
             response_description=ACCEPTED, responses=CREATE_ERRORS)
async def notify_webhook(body: NotifyWebhook, jobs: Jobs, settings: SettingsDep) -> NotificationAccepted:
    check_target("url", body.url, settings)
    return _accepted(await jobs.start("webhook", "notify", body, body.url,
                                      lambda spec: webhook_job(spec, body.url, body.data)))


@router.get("/notifications/{notification_id}", summary="A notification's state: queued, processing, success, ...",
            response_description="The notification's state, attempt log and callback",
            responses=errors(401, 404, 502, 503), response_model_exclude_unset=True)
async def notification(notification_id: str, gateway: Gateway) -> Notification:
    return Notification.model_validate(notification_body(await load_job(await gateway.client(), notification_id)))
