"""The /jobs family: BullMQ-style jobs, with status in `/jobs/{id}/status` and `/jobs/{id}` words."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import Gateway, Jobs, require_client_key
from api.errors import ApiError
from api.job_starter import StartedJob, cleanup_job, email_job, sms_job
from api.job_views import bullmq_body, job_status_body, load_job
from api.responses import BullMQJob, CancelAccepted, JobAccepted, JobStatus, errors
from api.schemas import CleanupJob, EmailJob, SmsJob
from common.models import Phase
from common.vocabulary import JOB_STATUS

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[Depends(require_client_key)])

ACCEPTED = "The job is durably recorded in Temporal"
CREATE_ERRORS = errors(400, 401, 413, 502, 503)
READ_ERRORS = errors(401, 404, 502, 503)


def _accepted(job: StartedJob) -> JobAccepted:
    return JobAccepted(jobId=job.job_id, status=JOB_STATUS[job.phase], statusUrl=f"/jobs/{job.job_id}/status")


@router.post("/email", status_code=202, summary="Queue an email job", response_description=ACCEPTED,
             responses=CREATE_ERRORS)
async def create_email_job(body: EmailJob, jobs: Jobs) -> JobAccepted:
    return _accepted(await jobs.start("email", "jobs", body, body.to,
                                      lambda spec: email_job(spec, body.to, body.subject, body.body)))


@router.post("/sms", status_code=202, summary="Queue an SMS job", response_description=ACCEPTED,
             responses=CREATE_ERRORS)
async def create_sms_job(body: SmsJob, jobs: Jobs) -> JobAccepted:
    return _accepted(await jobs.start("sms", "jobs", body, body.phone,
                                      lambda spec: sms_job(spec, body.phone, body.message)))


@router.post("/cleanup", status_code=202, summary="Queue a cleanup job", response_description=ACCEPTED,
             responses=CREATE_ERRORS)
async def create_cleanup_job(body: CleanupJob, jobs: Jobs) -> JobAccepted:
    return _accepted(await jobs.start("cleanup", "jobs", body, None, lambda spec: cleanup_job(spec, body.task)))


@router.get("/{job_id}/status", summary="A job's state: queued, delayed, processing, completed, failed, cancelled",
            response_description="The job's state, attempt log and callback", responses=READ_ERRORS,
            response_model_exclude_unset=True)
async def job_status(job_id: str, gateway: Gateway) -> JobStatus:
    return JobStatus.model_validate(job_status_body(await load_job(await gateway.client(), job_id)))


@router.get("/{job_id}", summary="A job's state in BullMQ's words: waiting, delayed, active, completed, ...",
            response_description="The job's state in BullMQ's words", responses=READ_ERRORS,
            response_model_exclude_unset=True)
async def job(job_id: str, gateway: Gateway) -> BullMQJob:
    return BullMQJob.model_validate(bullmq_body(await load_job(await gateway.client(), job_id)))


@router.post("/{job_id}/cancel", status_code=202, summary="Cancel a queued or delayed job",
             response_description="The cancel is recorded; the job reads `cancelled` shortly, nothing is sent",
             responses=errors(401, 404, 409, 502, 503))
async def cancel_job(job_id: str, gateway: Gateway) -> CancelAccepted:
    client = await gateway.client()
    view = await load_job(client, job_id)
    if view.phase.final:
        raise ApiError(409, "not_cancellable", f"the job is already {JOB_STATUS[view.phase]}")
    if view.phase == Phase.PROCESSING:
        raise ApiError(409, "not_cancellable", "the job is being sent right now and can no longer be cancelled")
    await client.get_workflow_handle(job_id).cancel()
    return CancelAccepted(jobId=job_id, cancelRequested=True, statusUrl=f"/jobs/{job_id}/status")
