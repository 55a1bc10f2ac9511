"""Nothing personal in Temporal in plain text: what the API and the workers write is encrypted by the
payload codec (common/codec.py), read back here WITHOUT the codec, as an operator's tools or a copy
of the database would see it.

A dev server of its own, on a SQLite file (the session's is in memory), with the API and workers of
the session's settings in front of it. An SMS (its first attempt refused by a gateway that echoes
the text), an email and a webhook, each with a distinctive text, run to the end; then their raw
histories, describes (memo, pending activity), visibility rows and the SQLite file itself are
searched for those texts and for the recipients' contact data. A control run started without the
codec shows that a plain payload would have been found in each place.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest

from api.main import create_app
from common.codec import ENCODING
from common.models import STATE_MEMO_KEY, TASK_QUEUES
from common.settings import Settings
from tests.api.helpers import AUTH, address_of, api_client, dev_server, mail_for, until_final
from tests.support.http_receiver import Answer, HttpReceiver
from tests.support.temporal import herald_client, running_workers

# Its module-scoped Temporal server is started once: under xdist all its tests run on one worker.
pytestmark = pytest.mark.xdist_group("encryption")

SMS_TEXT = "Vault code 7Q4-ZEBRA-991 for your eyes only"
EMAIL_BODY = "Dear Ada, the diagnosis is PLUM-LAGOON-3317."
EMAIL_SUBJECT = "Your results SUBJ-KESTREL-52"
WEBHOOK_SECRET_VALUE = "ledger-entry-ORCHID-8080"
PHONE = "+14155550187"
EMAIL_TO = "ada.plaintext-check@example.com"
PLAIN = [SMS_TEXT, EMAIL_BODY, EMAIL_SUBJECT, WEBHOOK_SECRET_VALUE, PHONE, EMAIL_TO]
CONTROL = "CONTROL-PLAINTEXT-4242"


@pytest.fixture(scope="module")
def db_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("encrypted") / "temporal.db"


@pytest_asyncio.fixture(scope="module")
async def file_env(db_file):
    async with dev_server(dev_server_database_filename=str(db_file)) as env:
        yield env


@pytest.fixture(scope="module")
def file_settings(settings, file_env) -> Settings:
    return settings.model_copy(update={"temporal_address": address_of(file_env)})


@pytest_asyncio.fixture(scope="module")
async def file_api(file_env, file_settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        running_workers(file_env.client, file_settings),
        api_client(create_app(file_settings), headers=AUTH) as client,
    ):
        yield client


@pytest_asyncio.fixture(scope="module")
async def finished_jobs(file_api, file_env, sms_gateway, smtp_sink) -> dict[str, str]:
    """The three jobs, run to their end, and the control run (never picked up), by name."""
    # The gateway's refusal carries the text: the failure (message, attempt log) must not show it.
    sms_gateway.script(PHONE, [Answer(500, {"error": f"cannot deliver {SMS_TEXT!r}"}), Answer(200, {"id": "m1"})])
    jobs = {}
    jobs["sms"] = (
        await file_api.post(
            "/notify/sms",
            json={"phone": PHONE, "message": SMS_TEXT, "attempts": 2, "backoff": {"type": "fixed", "delay": 100}},
        )
    ).json()["notificationId"]
    jobs["email"] = (
        await file_api.post("/jobs/email", json={"to": EMAIL_TO, "subject": EMAIL_SUBJECT, "body": EMAIL_BODY})
    ).json()["jobId"]
    with HttpReceiver([Answer(204)]) as receiver:
        jobs["webhook"] = (
            await file_api.post(
                "/notify/webhook", json={"url": receiver.url + "/hook", "data": {"entry": WEBHOOK_SECRET_VALUE}}
            )
        ).json()["notificationId"]
        finals = {name: await until_final(file_api, job_id) for name, job_id in jobs.items()}
    assert {name: body["status"] for name, body in finals.items()} == dict.fromkeys(jobs, "completed"), finals
    assert finals["sms"]["attempts"] == 2 and "HTTP 500" in finals["sms"]["deliveries"][0]["error"]
    assert [c.status for c in sms_gateway.calls_to(PHONE)] == [500, 200]
    # Delivered as given: the codec is invisible to the far side.
    [mail] = mail_for(smtp_sink.outbox, jobs["email"])
    assert EMAIL_BODY in mail.get_content() and mail["Subject"] == EMAIL_SUBJECT
    # The control: a run whose input is a plain payload (started without the codec), never run.
    jobs["control"] = "control-" + jobs["email"]
    await file_env.client.start_workflow(
        "NotificationWorkflow",
        {"note": CONTROL},
        id=jobs["control"],
        task_queue="herald-test-unpolled",
        memo={STATE_MEMO_KEY: {"note": CONTROL}},
    )
    return jobs


def _found(blob: bytes, texts: list[str]) -> list[str]:
    return [t for t in texts if t.encode() in blob]


async def test_raw_histories_hold_no_message_text_or_contact_data(file_env, finished_jobs):
    raw = file_env.client  # no codec: what Temporal keeps
    for name, job_id in finished_jobs.items():
        history = await raw.get_workflow_handle(job_id).fetch_history()
        blob = b"".join(event.SerializeToString() for event in history.events)
        if name == "control":
            assert _found(blob, [CONTROL]) == [CONTROL]
        else:
            assert _found(blob, PLAIN) == [], name
            started = history.events[0].workflow_execution_started_event_attributes
            assert {p.metadata["encoding"] for p in started.input.payloads} == {ENCODING}
            assert history.events[0].user_metadata.summary.metadata["encoding"] == ENCODING


async def test_memo_and_describe_hold_no_message_text_or_contact_data(file_env, finished_jobs, file_api, sms_gateway):
    raw = file_env.client
    for name, job_id in finished_jobs.items():
        description = (await raw.get_workflow_handle(job_id).describe()).raw_description
        memo = description.workflow_execution_info.memo.fields[STATE_MEMO_KEY]
        if name == "control":
            assert _found(description.SerializeToString(), [CONTROL]) == [CONTROL]
            continue
        assert memo.metadata["encoding"] == ENCODING, name
        assert _found(description.SerializeToString(), PLAIN) == [], name
    # While a send retries, what its backoff leaves is encrypted too: the failed attempts' failures in
    # history and the state (error, attempt log) the run writes into its memo while it waits.
    phone = "+14155550313"
    sms_gateway.script(phone, [Answer(500, {"error": f"cannot deliver {SMS_TEXT!r}"})])
    job_id = (
        await file_api.post(
            "/notify/sms",
            json={
                "phone": phone,
                "message": SMS_TEXT,
                "attempts": 5,
                "backoff": {"type": "exponential", "delay": 1000},
            },
        )
    ).json()["notificationId"]
    for _ in range(200):
        status = (await file_api.get(f"/jobs/{job_id}/status")).json()
        if status["status"] == "delayed" and status["attempts"] >= 2:
            break
        await asyncio.sleep(0.05)
    assert status["status"] == "delayed" and status["attempts"] >= 2, status
    description = (await raw.get_workflow_handle(job_id).describe()).raw_description
    assert description.workflow_execution_info.memo.fields[STATE_MEMO_KEY].metadata["encoding"] == ENCODING
    assert _found(description.SerializeToString(), [SMS_TEXT, phone]) == []
    history = await raw.get_workflow_handle(job_id).fetch_history()
    failures = [
        e.activity_task_failed_event_attributes.failure
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
    ]
    assert failures and {f.message for f in failures} == {"Encoded failure"}
    assert all(f.encoded_attributes.metadata["encoding"] == ENCODING for f in failures)
    assert _found(b"".join(e.SerializeToString() for e in history.events), [SMS_TEXT, phone]) == []
    # The API still reads it all: the attempt log and the failure, decrypted.
    assert "HTTP 500" in status["error"] and [d["attempt"] for d in status["deliveries"]][:2] == [1, 2], status
    await herald_client(file_env).get_workflow_handle(job_id).terminate(reason="test over")


async def test_visibility_holds_no_message_text_or_contact_data(file_env, finished_jobs):
    raw = file_env.client
    request = ListWorkflowExecutionsRequest(
        namespace=raw.namespace, query=" OR ".join(f"WorkflowId = '{i}'" for i in finished_jobs.values())
    )
    # Visibility records are written after the fact (the control run was started a moment ago).
    for _ in range(200):
        listed = await raw.workflow_service.list_workflow_executions(request)
        if len(listed.executions) == len(finished_jobs):
            break
        await asyncio.sleep(0.05)
    assert len(listed.executions) == len(finished_jobs)
    for info in listed.executions:
        blob = info.SerializeToString()
        expected = [CONTROL] if info.execution.workflow_id == finished_jobs["control"] else []
        assert _found(blob, [*PLAIN, CONTROL]) == expected, info.execution.workflow_id
        # Search attributes are not encoded (Temporal indexes them): they say what a job is, never whose.
        if info.execution.workflow_id != finished_jobs["control"]:
            assert info.search_attributes.indexed_fields["HeraldJobType"].metadata["encoding"] == b"json/plain"


async def test_the_sqlite_file_holds_no_message_text_or_contact_data(file_env, finished_jobs, db_file):
    # The database file and its write-ahead log (the dev server runs with journal_mode=wal).
    blob = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
    assert TASK_QUEUES["sms"].encode() in blob and finished_jobs["email"].encode() in blob  # it is the right file
    assert _found(blob, [CONTROL]) == [CONTROL]  # and a plain payload is found in it
    assert _found(blob, PLAIN) == []
