"""Idempotency-Key on every POST (api/core/idempotency.py, workflows/idempotency.py), against the real
dev server (update-with-start), real workers and the SMTP sink."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from temporalio.service import RPCError, RPCStatusCode

from api.core.idempotency import KeyStore
from common.idempotency import Claim, Completion, StoredAnswer, key_workflow_id
from common.temporal import client_for
from devstack.smtp_sink import read_outbox
from tests.api.helpers import ADMIN, API_KEY, api_client, assert_error, until_final

OTHER_KEY = "another-client-key"


def new_key() -> str:
    return f"key-{uuid.uuid4().hex}"


def email(to: str | None = None, **extra) -> dict:
    return {"to": to or f"idem-{uuid.uuid4().hex[:12]}@example.com", "subject": "Once", "body": "only once"} | extra


def mails_to(smtp_sink, address: str) -> list:
    return [m for m in read_outbox(smtp_sink.outbox) if m["To"] == address]


async def test_a_retry_returns_the_first_answer_and_sends_nothing_twice(api, smtp_sink):
    key, body = new_key(), email()
    first = await api.post("/notify/email", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    assert "idempotency-replayed" not in first.headers
    # The same request: same status, same body (the same notificationId), marked as a replay. A
    # JSON body is compared by value: another key order and spacing is the same request.
    again = await api.post(
        "/notify/email",
        content=str(dict(reversed(body.items()))).replace("'", '"'),
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert again.status_code == 202 and again.json() == first.json(), again.text
    assert again.headers["idempotency-replayed"] == "true"

    job_id = first.json()["notificationId"]
    assert (await until_final(api, job_id))["status"] == "completed"
    third = await api.post("/notify/email", json=body, headers={"Idempotency-Key": key})
    assert third.json() == first.json()
    await asyncio.sleep(0.5)  # a second job would have been sent by now (the first took far less)
    [mail] = mails_to(smtp_sink, body["to"])
    assert mail["Message-ID"] == f"<{job_id}@herald>"


async def test_the_same_key_with_another_request_is_a_conflict(api):
    key = new_key()
    first = await api.post("/jobs/email", json=email(), headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    other_body = await api.post("/jobs/email", json=email(), headers={"Idempotency-Key": key})
    assert_error(other_body, 409, "idempotency_conflict")
    other_path = await api.post(
        "/jobs/sms", json={"phone": "+14155550100", "message": "hi"}, headers={"Idempotency-Key": key}
    )
    assert_error(other_path, 409, "idempotency_conflict")


async def test_twenty_identical_requests_at_once_make_one_job(api, smtp_sink):
    key, body = new_key(), email()
    answers = await asyncio.gather(
        *(api.post("/notify/email", json=body, headers={"Idempotency-Key": key}) for _ in range(20))
    )
    assert [a.status_code for a in answers] == [202] * 20, [a.text for a in answers if a.status_code != 202]
    assert len({a.json()["notificationId"] for a in answers}) == 1
    assert sum(a.headers.get("idempotency-replayed") == "true" for a in answers) == 19
    await until_final(api, answers[0].json()["notificationId"])
    await asyncio.sleep(0.5)
    assert len(mails_to(smtp_sink, body["to"])) == 1


async def test_each_client_key_has_keys_of_its_own(api, make_app):
    key, body = new_key(), email()
    async with api_client(
        make_app(api_keys=[API_KEY, OTHER_KEY]), headers={"Authorization": f"Bearer {OTHER_KEY}"}
    ) as other:
        mine = await api.post("/jobs/email", json=body, headers={"Idempotency-Key": key})
        theirs = await other.post("/jobs/email", json=body, headers={"Idempotency-Key": key})
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["jobId"] != theirs.json()["jobId"]
    assert "idempotency-replayed" not in theirs.headers


async def test_a_400_is_kept_and_replayed_too(api):
    key, bad = new_key(), email(to="not an address")
    first = await api.post("/jobs/email", json=bad, headers={"Idempotency-Key": key})
    body = assert_error(first, 400, "validation_error")
    again = await api.post("/jobs/email", json=bad, headers={"Idempotency-Key": key})
    assert again.status_code == 400 and again.json() == body and again.headers["idempotency-replayed"] == "true"
    # The key is spent on that request: a corrected body needs a new key.
    assert_error(
        await api.post("/jobs/email", json=email(), headers={"Idempotency-Key": key}), 409, "idempotency_conflict"
    )


async def test_without_the_header_every_post_is_a_new_job(api):
    body = email()
    first, second = [await api.post("/jobs/email", json=body) for _ in range(2)]
    assert first.status_code == second.status_code == 202
    assert first.json()["jobId"] != second.json()["jobId"]
    assert "idempotency-replayed" not in second.headers


@pytest.mark.parametrize("value", ["", " padded", "x" * 256, "tab\tinside"])
async def test_a_key_that_is_not_printable_ascii_up_to_255_is_a_400(api, value):
    response = await api.post("/jobs/email", json=email(), headers={"Idempotency-Key": value})
    body = assert_error(response, 400, "validation_error")
    assert [d["field"] for d in body["details"]] == ["Idempotency-Key"]


async def test_a_wrong_client_key_is_a_401_and_never_reaches_the_store(anon, dev_env, settings):
    key = new_key()
    response = await anon.post(
        "/jobs/email", json=email(), headers={"Idempotency-Key": key, "Authorization": "Bearer wrong"}
    )
    assert_error(response, 401, "unauthorized")
    await assert_no_key(dev_env, settings, "client\nwrong", key)
    # Nor does a client key on an admin route (403).
    forbidden = await anon.post(
        "/admin/dlq/retry", json={}, headers={"Idempotency-Key": key, "Authorization": f"Bearer {API_KEY}"}
    )
    assert_error(forbidden, 403, "forbidden")
    await assert_no_key(dev_env, settings, f"admin\n{API_KEY}", key)


async def test_a_body_over_the_limit_is_a_413_and_never_reaches_the_store(api, dev_env, settings):
    key = new_key()
    response = await api.post(
        "/jobs/email", json=email(body="x" * (settings.max_body_bytes + 1)), headers={"Idempotency-Key": key}
    )
    assert_error(response, 413, "payload_too_large")
    await assert_no_key(dev_env, settings, f"client\n{API_KEY}", key)


async def test_a_client_gone_mid_upload_leaves_the_key_free(app, workers, dev_env, settings):
    """Only a whole body claims a key: a part of one, kept, would refuse the client's full retry (409)."""
    key = new_key()
    body = json.dumps(email()).encode()
    messages = [{"type": "http.request", "body": body[:20], "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [
        (b"authorization", f"Bearer {API_KEY}".encode()),
        (b"idempotency-key", key.encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/jobs/email",
        "raw_path": b"/jobs/email",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
    }
    await app(scope, receive, send)
    await assert_no_key(dev_env, settings, f"client\n{API_KEY}", key)


async def test_admin_posts_take_keys_of_the_admin_token(api):
    key = new_key()
    first = await api.post("/admin/schedules/no-such-schedule/pause", headers=ADMIN | {"Idempotency-Key": key})
    body = assert_error(first, 404, "not_found")
    again = await api.post("/admin/schedules/no-such-schedule/pause", headers=ADMIN | {"Idempotency-Key": key})
    assert again.status_code == 404 and again.json() == body and again.headers["idempotency-replayed"] == "true"
    # The client key's keys are others: the same key there is a request of its own.
    mine = await api.post("/jobs/email", json=email(), headers={"Idempotency-Key": key})
    assert mine.status_code == 202 and "idempotency-replayed" not in mine.headers


async def assert_no_key(dev_env, settings, credential: str, key: str) -> None:
    client = client_for(dev_env.client, settings)
    with pytest.raises(RPCError) as missing:
        await client.get_workflow_handle(key_workflow_id(credential, key)).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


class _Gateway:
    def __init__(self, client) -> None:
        self._client = client

    async def client(self):
        return self._client


async def test_a_holder_that_vanished_is_taken_over_after_its_lease_and_a_5xx_frees_the_key(dev_env, settings, workers):
    store = KeyStore(_Gateway(client_for(dev_env.client, settings)), settings, key_workflow_id("test", new_key()))
    holder = await store.claim(Claim(fingerprint="A", request_id="first", lease_s=1))
    assert holder.outcome == "proceed"
    # The first request's process died: no answer ever comes. The retry waits out its lease.
    started = time.monotonic()
    retry = await store.claim(Claim(fingerprint="A", request_id="retry", lease_s=30))
    assert retry.outcome == "proceed" and time.monotonic() - started >= 0.9
    # The retry ends in a 5xx: not kept, so the key is free again, even for another request.
    await store.complete(Completion(request_id="retry"))
    assert (await store.claim(Claim(fingerprint="B", request_id="third", lease_s=30))).outcome == "proceed"
    await store.complete(Completion(request_id="third", answer=StoredAnswer(status=202, body="{}")))
    replay = await store.claim(Claim(fingerprint="B", request_id="fourth", lease_s=30))
    assert replay.outcome == "replay" and replay.answer.status == 202
