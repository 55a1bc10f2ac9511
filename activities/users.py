"""Typed notifications: resolve the user (their workflow, workflows/user.py), render the templates
(activities/templates.py) and send the email, as one send activity of the job's lifecycle.

Resolving at send time means every attempt uses the user's current address. What retrying
cannot fix fails the job at once, with a reason that says so: an unknown user, a user without an
email address, a user who opted out of email, a template the notification's data cannot fill.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.email import EmailActivities
from activities.templates import TemplateError, render
from common.models import DeliveryReceipt, EmailMessage, TypedEmail, UserProfile, user_workflow_id
from common.settings import Settings

USER_QUERY = "profile"
# A user workflow no worker answers for (the maintenance queue down): a retryable failure, not a hang.
QUERY_TIMEOUT = timedelta(seconds=10)


async def load_user(client: Client, user_id: str, scope: str = "") -> UserProfile | None:
    """The user's profile, or None when there is no such user (no workflow `user-<userId>`) in the
    tenant's scope."""
    try:
        profile: UserProfile | None = await client.get_workflow_handle(user_workflow_id(user_id, scope)).query(
            USER_QUERY, result_type=UserProfile, rpc_timeout=QUERY_TIMEOUT
        )
        return profile
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def _permanent(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


class TypedEmailActivities:
    def __init__(self, settings: Settings, client: Client | None, email: EmailActivities) -> None:
        self.settings, self.client, self.email = settings, client, email

    async def compose(self, typed: TypedEmail) -> EmailMessage:
        """The message a typed notification sends to its user now; ApplicationError (non-retryable)
        when it cannot be sent to them at all."""
        assert self.client is not None, "typed notifications need the worker's Temporal client"
        user = await load_user(self.client, typed.user_id, typed.scope)
        if user is None:
            raise _permanent(f"unknown user {typed.user_id!r}: no PUT /users/{typed.user_id} was made", "UnknownUser")
        if "email" in user.opt_out:
            raise _permanent(f"user {typed.user_id!r} has opted out of email", "OptedOut")
        if not user.email:
            raise _permanent(f"user {typed.user_id!r} has no email address", "NoAddress")
        try:
            rendered = render(
                typed.type,
                {"name": user.name, "data": typed.data, "type": typed.type},
                user.locale,
                self.settings.templates_dir,
            )
        except TemplateError as exc:
            raise _permanent(f"the {typed.type} email cannot be rendered: {exc}", "TemplateError") from exc
        return EmailMessage(
            to=user.email,
            subject=rendered.subject,
            body=rendered.text,
            html=rendered.html,
            idempotency_key=typed.idempotency_key,
        )

    @activity.defn(name="send_typed_email")
    async def send_typed_email(self, typed: TypedEmail) -> DeliveryReceipt:
        message = await self.compose(typed)
        return await self.email.deliver(
            message, typed.context.job_attempt(activity.info().attempt), typed.context.max_attempts
        )
