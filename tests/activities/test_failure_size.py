"""A failed send attempt's error, as Temporal gets it: small enough for the server to keep whole.

While an activity retries, the server keeps each attempt's failure as the pending activity's last
failure, which the API shows as the job's error during the backoff. One bigger than
`limit.mutableStateActivityFailureSize.error` (4 KiB by default in Server 1.32: dynamicconfig's
MutableStateActivityFailureSizeLimitError) it replaces with "Failure exceeds size limit." So the
error of an attempt Temporal retries goes without stack trace, cause chain or attempt log (the log
travels in the heartbeat), and the error the workflow reads (the send's last) carries the whole log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.failure.v1 import Failure
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from activities.attempt_log import ERROR_CHARS, MAX_DELIVERIES_KEPT, AttemptLogInterceptor
from activities.batch import MAX_TEXT_BYTES, short
from activities.email import EmailActivities
from activities.http_rules import EXCERPT_CHARS
from activities.sms import SmsActivities
from activities.webhook import WebhookActivities
from api.batches.service import CHUNK_BYTES
from common.models import (
    AttemptContext,
    AttemptLog,
    AttemptRecord,
    BatchItemState,
    BatchResult,
    EmailMessage,
    Phase,
    SmsMessage,
    WebhookRequest,
)
from common.settings import Settings
from common.temporal import data_converter
from devstack.smtp_sink import SmtpSink
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import ENCRYPTION_KEY, free_port, local_settings

SERVER_LIMIT = 4 * 1024
# Temporal's largest payload (limit.blobSize.error: 2 MB by default).
TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024
# A retried attempt's error stays far below the limit whatever the log it inherits.
RETRIED_BUDGET = SERVER_LIMIT // 4
LONGEST = "é" * EXCERPT_CHARS  # escaped by the JSON payload converter: six bytes a character


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with SmtpSink(tmp_path / "outbox", port=free_port()) as sink:
        yield sink


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver([Answer(500, ("é" * 4 * EXCERPT_CHARS).encode(), headers={"Retry-After": "1"})]) as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, smtp_sink: SmtpSink, receiver: HttpReceiver) -> Settings:
    return local_settings(
        tmp_path, smtp_host="127.0.0.1", smtp_port=smtp_sink.port, sms_gateway_url=receiver.url, sms_gateway_token="t"
    )


def longest_log(count: int = MAX_DELIVERIES_KEPT - 1) -> list[AttemptRecord]:
    moment = datetime.now(UTC).isoformat()
    return [
        AttemptRecord(
            attempt=n,
            started_at=moment,
            finished_at=moment,
            succeeded=False,
            error="é" * ERROR_CHARS,
            status_code=500,
            response_excerpt=LONGEST,
            server_started_at=moment,
        )
        for n in range(1, count + 1)
    ]


class _Activity(ActivityInboundInterceptor):
    def __init__(self) -> None:
        pass

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        return await input.fn(*input.args)


async def failed_attempt(
    settings: Settings,
    send: Callable[[Any], Awaitable[Any]],
    message: Any,
    *,
    attempt: int = 2,
    max_attempts: int = MAX_DELIVERIES_KEPT,
    is_local: bool = False,
    schedule_to_close: timedelta = timedelta(hours=1),
) -> tuple[ApplicationError, Failure, list[Any]]:
    """The error a send attempt raises through the attempt log (activity attempt `attempt` of an
    activity with `max_attempts`, inheriting the longest log), as Temporal gets it, and its heartbeats."""
    env = ActivityEnvironment()
    inherited = longest_log() if not is_local else []
    env.info = replace(
        env.info,
        attempt=attempt,
        is_local=is_local,
        heartbeat_timeout=None if is_local else timedelta(seconds=10),
        heartbeat_details=[asdict(AttemptLog(inherited))] if inherited else [],
        scheduled_time=datetime.now(UTC),
        schedule_to_close_timeout=schedule_to_close,
        retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=max_attempts),
    )
    heartbeats: list[Any] = []
    env.on_heartbeat = lambda *details: heartbeats.append(details)
    message.context = AttemptContext(first_attempt=len(inherited) - attempt + 2, max_attempts=MAX_DELIVERIES_KEPT)
    inbound = AttemptLogInterceptor().intercept_activity(_Activity())
    with pytest.raises(ApplicationError) as raised:
        await env.run(inbound.execute_activity, ExecuteActivityInput(send, [message], None, {}))
    failure = Failure()
    await data_converter(settings).encode_failure(raised.value, failure)
    return raised.value, failure, heartbeats


def sends(settings: Settings, receiver: HttpReceiver) -> dict[str, tuple[Callable[[Any], Awaitable[Any]], Any, str]]:
    """Each channel's send, a message it fails (451 from the SMTP sink, a 500 with a long body), its error."""
    return {
        "email": (
            EmailActivities(settings).send_email,
            EmailMessage(to="y@tempfail.test", subject="probe", body="x", idempotency_key="email-1"),
            "SMTP server answered 451 4.3.0 try again later",
        ),
        "sms": (
            SmsActivities(settings).send_sms,
            SmsMessage(phone="+14155550100", message="hi", idempotency_key="sms-1"),
            "SMS gateway answered HTTP 500",
        ),
        "webhook": (
            WebhookActivities(settings).deliver_webhook,
            WebhookRequest(url=receiver.url, data={"a": 1}, webhook_id="webhook-1"),
            "Webhook receiver answered HTTP 500",
        ),
    }


@pytest.mark.parametrize("channel", ["email", "sms", "webhook"])
async def test_a_retried_attempts_error_is_its_reason_alone_far_below_the_servers_limit(settings, receiver, channel):
    send, message, reason = sends(settings, receiver)[channel]
    error, failure, heartbeats = await failed_attempt(settings, send, message)
    assert failure.ByteSize() <= RETRIED_BUDGET, failure
    assert not failure.HasField("cause") and not failure.application_failure_info.HasField("details")
    read = await data_converter(settings).decode_failure(failure)
    assert isinstance(read, ApplicationError) and read.message == reason and not read.non_retryable
    assert failure.stack_trace == "" and read.cause is None
    # The next attempt and the API read the log from the heartbeat: every attempt, this one last.
    carried = heartbeats[-1][0].deliveries
    assert [r.attempt for r in carried] == list(range(1, MAX_DELIVERIES_KEPT + 1))
    assert carried[-1].error == reason and carried[-1].status_code in (451, 500)
    assert error.__cause__ is not None  # the worker's log still shows what was raised underneath


@pytest.mark.parametrize("channel", ["email", "sms", "webhook"])
async def test_the_sends_last_error_carries_the_whole_log_for_the_workflow(settings, receiver, channel):
    send, message, reason = sends(settings, receiver)[channel]
    _error, failure, _heartbeats = await failed_attempt(settings, send, message, attempt=3, max_attempts=3)
    read = await data_converter(settings).decode_failure(failure)
    assert isinstance(read, ApplicationError) and read.message == reason
    assert [r["attempt"] for r in read.details[-1]["deliveries"]] == list(range(1, MAX_DELIVERIES_KEPT + 1))
    assert read.cause is None and failure.stack_trace == ""


async def test_a_first_attempt_run_locally_carries_its_log(settings, receiver):
    send, message, _reason = sends(settings, receiver)["sms"]
    _error, failure, heartbeats = await failed_attempt(settings, send, message, attempt=1, is_local=True)
    read = await data_converter(settings).decode_failure(failure)
    assert isinstance(read, ApplicationError) and [r["attempt"] for r in read.details[-1]["deliveries"]] == [1]
    assert heartbeats == []


async def test_an_attempt_near_its_deadline_carries_the_log(settings, receiver):
    # The server gives up retrying when the next attempt would start after the schedule-to-close
    # deadline: then the workflow reads this error, log and all.
    send, message, _reason = sends(settings, receiver)["webhook"]
    _error, failure, _heartbeats = await failed_attempt(settings, send, message, schedule_to_close=timedelta(seconds=5))
    read = await data_converter(settings).decode_failure(failure)
    assert isinstance(read, ApplicationError) and len(read.details[-1]["deliveries"]) == MAX_DELIVERIES_KEPT


async def test_a_long_reason_is_bounded(settings):
    async def refuse(_message: Any) -> None:
        raise ApplicationError("answered " + "é" * 10 * ERROR_CHARS, type="SmtpRejected")

    error, failure, heartbeats = await failed_attempt(
        settings, refuse, SmsMessage(phone="+14155550100", message="hi", idempotency_key="sms-2")
    )
    assert len(error.message) == ERROR_CHARS and error.message.endswith("…")
    assert heartbeats[-1][0].deliveries[-1].error == error.message
    assert failure.ByteSize() < SERVER_LIMIT


def test_a_batch_item_text_is_bounded_by_its_json_size_not_its_characters():
    assert short("x" * 300) == "x" * 300
    assert len(short("x" * 1000)) == 295  # 294 and the ellipsis
    # JSON writes each of these as \\uXXXX: 300 of them would take 1,800 bytes.
    cut = short("é" * 300)
    assert cut.endswith("…") and len(json.dumps(cut)) - 2 <= MAX_TEXT_BYTES


def test_a_batch_runs_result_at_the_largest_chunk_setting_fits_temporals_payload_limit():
    """A batch run returns every item's state (BatchResult): at HERALD_BATCH_CHUNK_ITEMS's maximum, with
    every item at its largest (its recipient its share of the 1 MiB chunk input, the longest summary in
    another script, a provider id; a failed item's error takes a summary's place), it is still under
    Temporal's 2 MB payload limit."""
    [limit] = [m.le for m in Settings.model_fields["batch_chunk_items"].metadata if hasattr(m, "le")]
    recipient = "https://example.com/" + "a" * (CHUNK_BYTES // limit - 20)
    text = short("ошибка " * 100)
    item = BatchItemState(
        phase=Phase.COMPLETED,
        recipient=recipient,
        attempts=10,
        updated_at=datetime.now(UTC).isoformat(),
        not_before=datetime.now(UTC).isoformat(),
        result={"summary": text, "provider_id": f"<batch-{'f' * 20}-{limit}@herald>", "provider": "fallback"},
    )
    result = BatchResult(
        batch_id=f"batch-{'f' * 20}-chunk9",
        channel="webhook",
        created_at=item.updated_at,
        max_attempts=10,
        items=[item] * limit,
    )
    [payload] = asyncio.run(data_converter(Settings(encryption_key=ENCRYPTION_KEY)).encode([result]))
    assert payload.ByteSize() < TEMPORAL_PAYLOAD_LIMIT, payload.ByteSize()
