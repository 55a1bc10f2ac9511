"""Digests through the API on the dev server: a digested topic's notifications wait `delayed` with their
digestId; GET /users/{userId}/digests lists the open digest (`items`: its topic, sendAt and jobIds in join order; the
deprecated `digests` in the previous release's shape); cancelling takes an item out; POST
/users/{userId}/digests/{digestId}/send sends it now as one email listing the items in order, and each
item completes with result.digestId. Bad ids are 400, unknown ones 404."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from devstack.smtp_sink import read_outbox
from tests.api.helpers import assert_error, mail_for, poll, until_final

DIGESTING = {"email": "ada@example.com", "name": "Ada", "digest": {"topics": ["orders"], "every": 3600}}


def new_user_id() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def email(user_id: str, subject: str) -> dict:
    return {"to": "ada@example.com", "subject": subject, "body": "Hello", "userId": user_id, "topic": "orders"}


async def in_digest(api, job_id: str) -> dict:
    return await poll(api, f"/jobs/{job_id}/status", lambda b: b["status"] == "delayed" and "digestId" in b)


async def test_a_digest_listed_an_item_cancelled_out_and_sent_now_as_one_email(api, smtp_sink):
    user_id = new_user_id()
    assert (await api.put(f"/users/{user_id}", json=DIGESTING)).status_code == 200
    assert (await api.get(f"/users/{user_id}/digests")).json() == {"userId": user_id, "items": [], "digests": []}
    before = datetime.now(UTC)
    first = (await api.post("/jobs/email", json=email(user_id, "Order 1 shipped"))).json()["jobId"]
    waiting = await in_digest(api, first)
    digest_id = waiting["digestId"]
    assert (
        before + timedelta(minutes=59)
        < datetime.fromisoformat(waiting["nextAttemptAt"])
        <= datetime.now(UTC) + timedelta(hours=1)
    )
    [decision] = waiting["decisions"]
    assert (decision["rule"], decision["outcome"]) == ("digest", "digested") and decision["until"]
    typed = await api.post(
        "/notifications",
        json={"type": "order-confirmed", "userId": user_id, "topic": "orders", "data": {"orderId": "A-17"}},
    )
    assert typed.status_code == 202, typed.text
    second = typed.json()["jobId"]
    assert (await in_digest(api, second))["digestId"] == digest_id
    gone = (await api.post("/notify/email", json=email(user_id, "Cancelled one"))).json()["notificationId"]
    assert (await in_digest(api, gone))["digestId"] == digest_id
    third = (await api.post("/jobs/email", json=email(user_id, "Order 3 shipped"))).json()["jobId"]
    await in_digest(api, third)

    answer = (await api.get(f"/users/{user_id}/digests")).json()
    assert set(answer) == {"userId", "items", "digests"}
    [item] = answer["items"]
    assert set(item) == {"digestId", "topic", "sendAt", "jobIds"}
    assert (item["digestId"], item["topic"]) == (digest_id, "orders")
    assert item["jobIds"] == [first, second, gone, third]  # the order they joined
    # The previous release's shape, kept (deprecated): the same digest, sendAt its nextAt.
    [legacy] = answer["digests"]
    assert (legacy["digestId"], legacy["topic"], legacy["items"]) == (digest_id, "orders", 4)
    assert item["sendAt"] == legacy["nextAt"] == waiting["nextAttemptAt"]

    assert (await api.post(f"/jobs/{gone}/cancel")).status_code == 202
    assert (await until_final(api, gone))["status"] == "cancelled"
    left = await poll(api, f"/users/{user_id}/digests", lambda b: b["items"] and len(b["items"][0]["jobIds"]) == 3)
    assert left["items"][0]["jobIds"] == [first, second, third]
    assert left["digests"][0]["items"] == 3 and left["items"][0]["sendAt"] == left["digests"][0]["nextAt"]

    sent = await api.post(f"/users/{user_id}/digests/{digest_id}/send")
    assert sent.status_code == 202, sent.text
    assert sent.json() == {"userId": user_id, "digestId": digest_id, "sendRequested": True}
    for job_id in (first, second, third):
        done = await until_final(api, job_id)
        assert done["status"] == "completed" and done["result"] == {"digestId": digest_id}, done
        assert done["digestId"] == digest_id
        assert [(d["rule"], d["outcome"]) for d in done["decisions"]] == [("digest", "digested"), ("digest", "sent")]
        assert mail_for(smtp_sink.outbox, job_id) == []  # none went out alone
    assert (await api.get(f"/notifications/{first}")).json()["status"] == "success"
    [mail] = [m for m in read_outbox(smtp_sink.outbox) if m["Message-ID"] == f"<{digest_id}@herald>"]
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert text.index("Order 1 shipped") < text.index("Order A-17 confirmed") < text.index("Order 3 shipped")
    assert "Cancelled one" not in text and "Hello Ada" in text
    assert (await api.get(f"/users/{user_id}/digests")).json() == {"userId": user_id, "items": [], "digests": []}
    # Sent: no longer open.
    assert_error(await api.post(f"/users/{user_id}/digests/{digest_id}/send"), 404, "not_found")


async def test_digest_routes_refuse_bad_and_unknown_ids(api):
    user_id = new_user_id()
    assert_error(await api.get(f"/users/{user_id}/digests"), 404, "not_found")
    unknown = f"digest-{'0' * 32}-1"
    assert_error(await api.post(f"/users/{user_id}/digests/{unknown}/send"), 404, "not_found")
    assert (await api.put(f"/users/{user_id}", json=DIGESTING)).status_code == 200
    assert_error(await api.post(f"/users/{user_id}/digests/{unknown}/send"), 404, "not_found")
    for bad in ("nope", "digest-xyz-1", f"digest-{'0' * 32}-", f"digest-{'0' * 32}-1-2"):
        refused = assert_error(await api.post(f"/users/{user_id}/digests/{bad}/send"), 400, "validation_error")
        assert [d["field"] for d in refused["details"]] == ["path.digestId"], refused
    assert_error(await api.get("/users/bad%20id/digests"), 400, "validation_error")


async def test_a_digest_turned_off_sends_its_items_at_once(api, smtp_sink):
    user_id = new_user_id()
    assert (await api.put(f"/users/{user_id}", json=DIGESTING)).status_code == 200
    job_id = (await api.post("/jobs/email", json=email(user_id, "Soon"))).json()["jobId"]
    await in_digest(api, job_id)
    assert (await api.put(f"/users/{user_id}", json={"email": "ada@example.com"})).status_code == 200
    done = await until_final(api, job_id)
    assert done["status"] == "completed" and "digestId" not in done, done
    assert len(mail_for(smtp_sink.outbox, job_id)) == 1


async def test_release_takes_an_item_out_of_its_digest_and_sends_it(api, smtp_sink):
    user_id = new_user_id()
    assert (await api.put(f"/users/{user_id}", json=DIGESTING)).status_code == 200
    job_id = (await api.post("/jobs/email", json=email(user_id, "Now please"))).json()["jobId"]
    await in_digest(api, job_id)
    assert (await api.post(f"/jobs/{job_id}/release")).status_code == 202
    done = await until_final(api, job_id)
    assert done["status"] == "completed", done
    assert [(d["rule"], d["outcome"]) for d in done["decisions"]] == [
        ("digest", "digested"),
        ("release", "released"),
        ("digest", "sent"),
    ]
    assert len(mail_for(smtp_sink.outbox, job_id)) == 1
    assert (await api.get(f"/users/{user_id}/digests")).json() == {"userId": user_id, "items": [], "digests": []}
