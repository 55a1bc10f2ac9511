"""The /notify family: notifications, with status in `/notifications/{id}` words."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import SettingsDep, get_gateway, require_client_key
from api.job_starter import StartedJob, check_target, email_job, job_spec, new_job_id, sms_job, start_job, webhook_job
from api.job_views import load_job, notification_body
from api.schemas import NotificationAccepted, NotifyEmail, NotifySms, NotifyWebhook
from api.temporal import TemporalGateway
from common.vocabulary import NOTIFICATION_STATUS

router = APIRouter(tags=["notifications"], dependencies=[Depends(require_client_key)])
Gateway = Annotated[TemporalGateway, Depends(get_gateway)]


def _accepted(job: StartedJob) -> NotificationAccepted:
    return NotificationAccepted(notificationId=job.job_id, status=NOTIFICATION_STATUS[job.phase],
                                statusUrl=f"/notifications/{job.job_id}")


@router.post("/notify/email", status_code=202, summary="Send an email")
async def notify_email(body: NotifyEmail, gateway: Gateway, settings: SettingsDep) -> NotificationAccepted:
    spec = job_spec(new_job_id("email"), "email", "notify", body, settings, recipient=body.to)
    return _accepted(await start_job(await gateway.client(), email_job(spec, body.to, body.subject, body.body), body.priority))


@router.post("/notify/sms", status_code=202, summary="Send an SMS")
async def notify_sms(body: NotifySms, gateway: Gateway, settings: SettingsDep) -> NotificationAccepted:
    spec = job_spec(new_job_id("sms"), "sms", "notify", body, settings, recipient=body.phone)
    return _accepted(await start_job(await gateway.client(), sms_job(spec, body.phone, body.message), body.priority))


@router.post("/notify/webhook", status_code=202, summary="POST `data` to `url` as a signed webhook")
async def notify_webhook(body: NotifyWebhook, gateway: Gateway, settings: SettingsDep) -> NotificationAccepted:
    check_target("url", body.url, settings)
    spec = job_spec(new_job_id("webhook"), "webhook", "notify", body, settings, recipient=body.url)
    return _accepted(await start_job(await gateway.client(), webhook_job(spec, body.url, body.data), body.priority))


@router.get("/notifications/{notification_id}", summary="A notification's state: queued, processing, success, ...")
async def notification(notification_id: str, gateway: Gateway) -> dict:
    return notification_body(await load_job(await gateway.client(), notification_id))
