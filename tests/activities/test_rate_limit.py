"""A rate-limited worker's sends (activities/rate_limit.py), through the interceptors worker.py installs:
a send run as a local activity declines before it does anything, one run as an activity sends; a batch
slice of several items declines unsent, a slice of one sends."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from activities.batch import BatchActivities
from activities.email import EmailActivities
from activities.maintenance import MaintenanceActivities
from activities.sms_quota import SmsSlotRequest
from common.models import BatchEmail, BatchSlice, CleanupTask, EmailMessage, QuotaAnswer
from common.names import FIRST_ATTEMPT_DECLINED
from common.settings import Settings
from devstack.smtp_sink import SmtpSink, read_outbox
from tests.support.temporal import free_port, local_settings
from worker import activity_interceptors


class _Activity(ActivityInboundInterceptor):
    """The innermost step: the activity function itself (counting its calls)."""

    def __init__(self) -> None:
        self.calls = 0

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        self.calls += 1
        return await input.fn(*input.args)


@pytest.fixture
def sink(tmp_path):
    with SmtpSink(tmp_path / "outbox", port=free_port()) as sink:
        yield sink


def settings_for(tmp_path, sink: SmtpSink, **changes: Any) -> Settings:
    return local_settings(tmp_path, smtp_port=sink.port, **changes)


def worker_chain(settings: Settings, channel: str = "email") -> tuple[ActivityInboundInterceptor, _Activity]:
    """A channel's worker's interceptors (worker.py, outermost first) around the activity function."""
    inner = _Activity()
    inbound: ActivityInboundInterceptor = inner
    for interceptor in reversed(activity_interceptors(settings, channel)):
        inbound = interceptor.intercept_activity(inbound)
    return inbound, inner


async def run_in(inbound: ActivityInboundInterceptor, fn: Callable[..., Any], arg: Any, *, is_local: bool) -> Any:
    env = ActivityEnvironment()
    env.info = replace(env.info, is_local=is_local, workflow_id="email-rate-1")
    return await env.run(inbound.execute_activity, ExecuteActivityInput(fn, [arg], None, {}))


def message() -> EmailMessage:
    return EmailMessage(to="ada@example.com", subject="Hello", body="Body text", idempotency_key="email-rate-1")


async def test_a_local_send_on_a_rate_limited_worker_declines_before_doing_anything(tmp_path, sink):
    settings = settings_for(tmp_path, sink, email_rate_limit=5)
    inbound, inner = worker_chain(settings)
    with pytest.raises(ApplicationError) as declined:
        await run_in(inbound, EmailActivities(settings).send_email, message(), is_local=True)
    error = declined.value
    assert error.type == FIRST_ATTEMPT_DECLINED and error.non_retryable
    assert error.category == ApplicationErrorCategory.BENIGN
    # Declined outside the attempt log (no attempt in its details) and before the send itself ran.
    assert not error.details
    assert inner.calls == 0
    assert read_outbox(sink.outbox) == []


@pytest.mark.parametrize(
    ("rate_limit", "is_local"), [(5, False), (None, True), (None, False)], ids=["limited-activity", "local", "activity"]
)
async def test_a_send_runs_as_an_activity_on_a_rate_limited_worker_and_anyhow_elsewhere(
    tmp_path, sink, rate_limit, is_local
):
    settings = settings_for(tmp_path, sink, email_rate_limit=rate_limit)
    inbound, inner = worker_chain(settings)
    receipt = await run_in(inbound, EmailActivities(settings).send_email, message(), is_local=is_local)
    assert inner.calls == 1
    [mail] = read_outbox(sink.outbox)
    assert mail["Message-ID"] == "<email-rate-1@herald>" == receipt.provider_id
    assert [d.attempt for d in receipt.deliveries] == [1] and receipt.deliveries[0].succeeded


async def test_a_cleanup_run_locally_on_a_rate_limited_maintenance_worker_declines_too(tmp_path, sink):
    settings = settings_for(tmp_path, sink, maintenance_rate_limit=1)
    (settings.temp_dir).mkdir(parents=True)
    (settings.temp_dir / "old.tmp").write_text("x")
    inbound, inner = worker_chain(settings, "maintenance")
    with pytest.raises(ApplicationError) as declined:
        await run_in(
            inbound, MaintenanceActivities(settings).run_cleanup, CleanupTask(task="delete_temp"), is_local=True
        )
    assert declined.value.type == FIRST_ATTEMPT_DECLINED and inner.calls == 0
    report = await run_in(
        inbound, MaintenanceActivities(settings).run_cleanup, CleanupTask(task="delete_temp"), is_local=False
    )
    assert inner.calls == 1 and report.task == "delete_temp"


async def test_a_local_activity_that_sends_nothing_is_not_declined(tmp_path, sink):
    # An SMS's quota slot is a local activity on a rate-limited queue too: not a send, so it runs.
    settings = settings_for(tmp_path, sink, email_rate_limit=5)

    async def take_slot(request: SmsSlotRequest) -> QuotaAnswer:
        return QuotaAnswer(granted=True, used=1)

    inbound, inner = worker_chain(settings)
    answer = await run_in(inbound, take_slot, SmsSlotRequest(phone="+14155550100", token="t"), is_local=True)
    assert inner.calls == 1 and answer.granted


def email_slice(n: int) -> BatchSlice:
    return BatchSlice(
        batch_id="batch-rate",
        numbers=list(range(n)),
        attempts=[1] * n,
        max_attempts=3,
        emails=[BatchEmail(to=f"user{i}@example.com", subject="Hi", body="x") for i in range(n)],
    )


async def test_a_slice_of_several_items_declines_unsent_on_a_rate_limited_worker(tmp_path, sink):
    settings = settings_for(tmp_path, sink, email_rate_limit=5)
    outcome = await ActivityEnvironment().run(BatchActivities(settings).send_email_slice, email_slice(3))
    assert outcome.declined and outcome.items() == []
    assert read_outbox(sink.outbox) == []


@pytest.mark.parametrize(("rate_limit", "items"), [(5, 1), (None, 3)], ids=["limited-one-item", "unlimited"])
async def test_a_slice_sends_when_the_limit_counts_each_item(tmp_path, sink, rate_limit, items):
    settings = settings_for(tmp_path, sink, email_rate_limit=rate_limit)
    run = functools.partial(ActivityEnvironment().run, BatchActivities(settings).send_email_slice)
    outcome = await run(email_slice(items))
    assert not outcome.declined and all(o.ok for o in outcome.items())
    assert sorted(m["Message-ID"] for m in read_outbox(sink.outbox)) == sorted(
        f"<batch-rate-{i}@herald>" for i in range(items)
    )
