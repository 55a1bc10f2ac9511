"""Digests (workflows/digest.py): a job joins its user's digest for a topic, and a digest goes out as one email.

`join_digest` is a local activity of the job's run (workflows/job_tracking.py): a workflow cannot
signal-with-start, so it signals the digest's workflow through the worker's client, starting it where
none runs (the time-skipping test server has no update-with-start; the digest answers the job with a
`digest_joined` signal). `send_digest` renders the digest with the Jinja2 templates `digest.*.j2` in the
user's locale (activities/templates.py), each item a line: an email's subject, or a typed notification's
subject template (`order-confirmed`: "Order A-1 confirmed"), and sends it by the email path
(activities/email.py) with the digest id as idempotency key (its Message-ID).
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client
from temporalio.common import TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.email import EmailActivities
from activities.templates import TemplateError, render
from activities.users import _permanent, load_user
from common.jobs import tenant_attributes, tenant_memo
from common.logs import log_event
from common.models import (
    DIGEST_JOIN_SIGNAL,
    DIGEST_TAKE_OUT_UPDATE,
    ENTITY_TASK_QUEUE,
    DeliveryReceipt,
    DigestEmail,
    DigestInput,
    DigestItem,
    DigestJoin,
    DigestLeave,
    DigestLeft,
    EmailMessage,
    digest_workflow_id,
)
from common.names import DIGEST_WORKFLOW
from common.settings import Settings

JOIN_DIGEST = "join_digest"
LEAVE_DIGEST = "leave_digest"
SEND_DIGEST = "send_digest"


def item_line(item: DigestItem, locale: str | None, settings: Settings) -> str:
    """One item's line in the digest: its subject, or its typed notification's rendered subject."""
    if item.type is not None:
        try:
            return render(
                item.type, {"name": None, "data": item.data or {}, "type": item.type}, locale, settings.templates_dir
            ).subject
        except TemplateError:
            return item.type
    return item.subject or item.job_id


class DigestActivities:
    def __init__(self, settings: Settings, client: Client | None, email: EmailActivities) -> None:
        self.settings, self.client, self.email = settings, client, email

    @activity.defn(name=JOIN_DIGEST)
    async def join_digest(self, join: DigestJoin) -> str:
        """Signal-with-start the user's digest for the topic; the digest's workflow id."""
        assert self.client is not None, "joining a digest needs the worker's Temporal client"
        workflow_id = digest_workflow_id(join.user_id, join.topic, join.scope)
        await self.client.start_workflow(
            DIGEST_WORKFLOW,
            DigestInput(user_id=join.user_id, scope=join.scope, topic=join.topic, tenant=join.tenant),
            id=workflow_id,
            task_queue=ENTITY_TASK_QUEUE,
            start_signal=DIGEST_JOIN_SIGNAL,
            start_signal_args=[join],
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            memo=tenant_memo(join.tenant),
            search_attributes=TypedSearchAttributes(tenant_attributes(join.tenant)),
            static_summary=f"digest of topic {join.topic!r}",
        )
        return workflow_id

    @activity.defn(name=LEAVE_DIGEST)
    async def leave_digest(self, leave: DigestLeave) -> DigestLeft:
        """Take the job out of its digest (the digest workflow's `take_out` update): whether it was taken out
        before the digest's send began. A digest workflow that is gone holds nothing: taken."""
        assert self.client is not None, "leaving a digest needs the worker's Temporal client"
        handle = self.client.get_workflow_handle(leave.digest_workflow)
        try:
            left: DigestLeft = await handle.execute_update(DIGEST_TAKE_OUT_UPDATE, leave.job_id, result_type=DigestLeft)
            return left
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise  # retried: the job waits for the digest's answer
            log_event("digest.leave_gone", job_id=leave.job_id, digest=leave.digest_workflow, error=str(exc))
            return DigestLeft(taken=True)

    async def compose(self, digest: DigestEmail) -> EmailMessage:
        assert self.client is not None, "a digest needs the worker's Temporal client"
        user = await load_user(self.client, digest.user_id, digest.scope)
        if user is None:
            raise _permanent(f"unknown user {digest.user_id!r}", "UnknownUser")
        if not user.email:
            raise _permanent(f"user {digest.user_id!r} has no email address", "NoAddress")
        lines = [item_line(item, user.locale, self.settings) for item in digest.items]
        context = {"name": user.name, "topic": digest.topic, "items": lines, "count": len(lines)}
        try:
            rendered = render("digest", context, user.locale, self.settings.templates_dir)
        except TemplateError as exc:
            raise _permanent(f"the digest cannot be rendered: {exc}", "TemplateError") from exc
        return EmailMessage(
            to=user.email,
            subject=rendered.subject,
            body=rendered.text,
            html=rendered.html,
            idempotency_key=digest.digest_id,
        )

    @activity.defn(name=SEND_DIGEST)
    async def send_digest(self, digest: DigestEmail) -> DeliveryReceipt:
        message = await self.compose(digest)
        info = activity.info()
        return await self.email.deliver(message, info.attempt, digest.context.max_attempts)
