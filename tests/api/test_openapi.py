"""The published schema: every answer typed, the status words exact, and real answers matching it."""

from __future__ import annotations

from typing import get_args, get_type_hints

import pytest

from api.jobs.models import BullMQStatusWord, CallbackStatusWord, JobStatusWord, NotificationStatusWord
from common.models import CallbackState, Phase
from common.vocabulary import BULLMQ_STATUS, JOB_STATUS, NOTIFICATION_STATUS
from tests.api.helpers import REF, assert_error, check_schema, poll, schema_named
from tests.support.http_receiver import Answer, HttpReceiver

# The success answer of each route, by the name of its schema.
SUCCESS = {
    ("post", "/jobs/email"): ("202", "JobAccepted"),
    ("post", "/jobs/sms"): ("202", "JobAccepted"),
    ("post", "/jobs/cleanup"): ("202", "JobAccepted"),
    ("get", "/jobs/{job_id}/status"): ("200", "JobStatus"),
    ("get", "/jobs/{job_id}"): ("200", "BullMQJob"),
    ("post", "/jobs/{job_id}/cancel"): ("202", "CancelAccepted"),
    ("post", "/jobs/{job_id}/release"): ("202", "ReleaseAccepted"),
    ("post", "/notify/email"): ("202", "NotificationAccepted"),
    ("post", "/notify/sms"): ("202", "NotificationAccepted"),
    ("post", "/notify/webhook"): ("202", "NotificationAccepted"),
    ("get", "/notifications/{notification_id}"): ("200", "Notification"),
    ("get", "/healthz"): ("200", "Health"),
    ("get", "/readyz"): ("200", "Ready"),
    ("get", "/admin/dlq"): ("200", "DeadLetterList"),
    ("post", "/admin/dlq/{job_id}/retry"): ("202", "Redriven"),
    ("delete", "/admin/dlq/{job_id}"): ("200", "Discarded"),
    ("post", "/admin/dlq/retry"): ("200", "RedrivenAll"),
    ("post", "/schedules"): ("201", "ScheduleCreated"),
    ("get", "/schedules/{schedule_id}"): ("200", "ScheduleDetail"),
    ("delete", "/schedules/{schedule_id}"): ("200", "ScheduleDeleted"),
    ("get", "/admin/schedules"): ("200", "ScheduleList"),
    ("post", "/admin/schedules/{schedule_id}/trigger"): ("200", "ScheduleDetail"),
    ("post", "/admin/schedules/{schedule_id}/pause"): ("200", "ScheduleDetail"),
    ("post", "/admin/schedules/{schedule_id}/unpause"): ("200", "ScheduleDetail"),
    ("get", "/admin/stats"): ("200", "Stats"),
    ("get", "/admin/jobs"): ("200", "RecentJobs"),
    ("get", "/admin/jobs/{job_id}"): ("200", "JobStatus"),
    ("post", "/reports"): ("202", "ReportAccepted"),
    ("get", "/reports/{job_id}/result"): ("200", "Report"),
    ("put", "/users/{userId}"): ("200", "User"),
    ("get", "/users/{userId}"): ("200", "User"),
    ("get", "/users/{userId}/digests"): ("200", "Digests"),
    ("post", "/users/{userId}/digests/{digestId}/send"): ("202", "DigestSendAccepted"),
    ("post", "/notifications"): ("202", "TypedNotificationAccepted"),
    ("post", "/notify/batch"): ("202", "BatchAccepted"),
    ("get", "/batches/{batch_id}"): ("200", "BatchStatus"),
    ("post", "/batches/{batch_id}/cancel"): ("202", "BatchCancelled"),
    ("post", "/codec/encode"): ("200", "CodecPayloads"),
    ("post", "/codec/decode"): ("200", "CodecPayloads"),
}
# Server-Sent Events routes: the schema of each event's JSON `data`.
EVENTS = {("get", "/jobs/{job_id}/events"): ("200", "JobStatus")}
# Routes whose success answer is not JSON, by its content type.
TEXT = {("get", "/metrics"): ("200", "text/plain"), ("get", "/admin"): ("200", "text/html")}
# Open routes: no key, so no 401.
OPEN = {"/healthz", "/readyz", "/metrics"}
# Routes that never call Temporal, so never a 503: the payload codec works on the payloads it is sent.
NO_TEMPORAL = {"/codec/encode", "/codec/decode"}


@pytest.fixture
async def spec(anon) -> dict:
    response = await anon.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def _words(mapping: dict[Phase, str]) -> list[str]:
    return list(dict.fromkeys(mapping[p] for p in Phase))


# ---- what the schema says ------------------------------------------------------------------
def test_every_route_names_the_schema_of_its_success_answer(spec):
    routes = {(method, path) for path, methods in spec["paths"].items() for method in methods}
    assert routes == set(SUCCESS) | set(TEXT) | set(EVENTS), (
        "a route was added or removed: give it a response model and list it here"
    )
    for (method, path), (status, content_type) in TEXT.items():
        responses = spec["paths"][path][method]["responses"]
        assert [s for s in responses if s.startswith("2")] == [status], (method, path, list(responses))
        assert list(responses[status]["content"]) == [content_type], (method, path)
    for (method, path), (status, name) in EVENTS.items():
        responses = spec["paths"][path][method]["responses"]
        data = responses[status]["content"]["text/event-stream"]["itemSchema"]["properties"]["data"]
        assert data["contentSchema"] == {"$ref": REF + name}, (method, path)
    for (method, path), (status, name) in SUCCESS.items():
        responses = spec["paths"][path][method]["responses"]
        assert [s for s in responses if s.startswith("2")] == [status], (method, path, list(responses))
        assert responses[status]["content"]["application/json"]["schema"] == {"$ref": REF + name}, (method, path)
        assert "properties" in schema_named(spec, name), name


def test_errors_are_documented_in_the_error_shape_and_never_as_422(spec):
    error = schema_named(spec, "Error")
    assert set(error["properties"]) == {"error", "message", "details"} == set(error["required"])
    assert set(schema_named(spec, "FieldError")["properties"]) == {"field", "message"}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            for status, answer in responses.items():
                if not status.startswith(("2", "3")):  # 304: Not Modified, no body
                    assert answer["content"]["application/json"]["schema"] == {"$ref": REF + "Error"}, (method, path)
            assert "default" in responses, (method, path)
            if path not in OPEN:
                assert "401" in responses, (method, path)
            if path not in OPEN | NO_TEMPORAL:
                assert "503" in responses, (method, path)
    for path in ("/jobs/email", "/jobs/sms", "/jobs/cleanup", "/notify/email", "/notify/sms", "/notify/webhook"):
        assert {"400", "413"} <= set(spec["paths"][path]["post"]["responses"]), path
    assert "409" in spec["paths"]["/jobs/{job_id}/cancel"]["post"]["responses"]
    assert "Retry-After" in spec["paths"]["/readyz"]["get"]["responses"]["503"]["headers"]


def test_status_fields_carry_each_familys_words(spec):
    def enum(schema: str, field: str = "status") -> list[str]:
        return schema_named(spec, schema)["properties"][field]["enum"]

    assert enum("JobStatus") == _words(JOB_STATUS) == list(get_args(JobStatusWord))
    assert enum("BullMQJob") == _words(BULLMQ_STATUS) == list(get_args(BullMQStatusWord))
    assert enum("Notification") == _words(NOTIFICATION_STATUS) == list(get_args(NotificationStatusWord))
    assert enum("JobAccepted") == _words(JOB_STATUS)
    assert enum("NotificationAccepted") == _words(NOTIFICATION_STATUS)
    assert (
        enum("Callback")
        == list(get_args(CallbackStatusWord))
        == list(get_args(get_type_hints(CallbackState)["status"]))
    )


def test_keys_that_are_left_out_are_optional_and_never_null(spec):
    job_status, notification, bullmq = (schema_named(spec, n) for n in ("JobStatus", "Notification", "BullMQJob"))
    assert set(job_status["required"]) == {
        "id",
        "type",
        "status",
        "attempts",
        "maxAttempts",
        "result",
        "error",
        "createdAt",
        "updatedAt",
        "deliveries",
        "decisions",
    }
    assert set(notification["required"]) == {
        "id",
        "type",
        "recipient",
        "status",
        "attempts",
        "maxAttempts",
        "createdAt",
        "updatedAt",
        "deliveries",
        "decisions",
    }
    assert set(bullmq["required"]) == {"id", "status", "attempts", "maxAttempts", "decisions"}
    for schema, key in [
        (job_status, "nextAttemptAt"),
        (job_status, "callback"),
        (notification, "error"),
        (notification, "callback"),
        (bullmq, "error"),
        (job_status, "suppressedReason"),
        (notification, "suppressedReason"),
        (bullmq, "suppressedReason"),
    ]:
        assert "anyOf" not in schema["properties"][key] and "default" not in schema["properties"][key], key
    assert set(schema_named(spec, "Delivery")["properties"]) == {
        "attempt",
        "startedAt",
        "finishedAt",
        "succeeded",
        "error",
        "retryable",
        "statusCode",
        "responseExcerpt",
        "interrupted",  # only on an attempt cut short by a crash
    }
    delivery = schema_named(spec, "Delivery")
    assert "interrupted" not in delivery.get("required", []) and "default" not in delivery["properties"]["interrupted"]
    assert set(schema_named(spec, "Callback")["properties"]) == {"url", "status", "attempts", "error"}


# ---- real answers match it ------------------------------------------------------------------
async def test_every_answer_matches_the_published_schema(api, anon, spec):
    with HttpReceiver([Answer(204)]) as ok, HttpReceiver([Answer(404, {"error": "gone"})]) as gone:
        # A notification that succeeds and calls back; one that fails; a delayed job that is cancelled.
        sent = await api.post(
            "/notify/webhook", json={"url": ok.url + "/hook", "data": {"n": 1}, "webhookUrl": ok.url + "/cb"}
        )
        nid = check_schema(spec, sent, "post", "/notify/webhook")["notificationId"]
        failed = await api.post(
            "/jobs/email",
            json={"to": "ada@example.com", "subject": "s", "body": "b", "delay": 60000, "webhookUrl": gone.url},
        )
        delayed_id = check_schema(spec, failed, "post", "/jobs/email")["jobId"]
        failing = await api.post("/notify/webhook", json={"url": gone.url, "data": None})
        failing_id = check_schema(spec, failing, "post", "/notify/webhook")["notificationId"]
        cleanup = await api.post("/jobs/cleanup", json={"task": "expire_sessions"})
        cleanup_id = check_schema(spec, cleanup, "post", "/jobs/cleanup")["jobId"]

        delayed = check_schema(spec, await api.get(f"/jobs/{delayed_id}/status"), "get", "/jobs/{job_id}/status")
        assert (
            delayed["status"] == "delayed" and "nextAttemptAt" in delayed and delayed["callback"]["status"] == "pending"
        )
        check_schema(spec, await api.get(f"/jobs/{delayed_id}"), "get", "/jobs/{job_id}")
        check_schema(spec, await api.get(f"/notifications/{delayed_id}"), "get", "/notifications/{notification_id}")
        check_schema(spec, await api.post(f"/jobs/{delayed_id}/cancel"), "post", "/jobs/{job_id}/cancel")

        done = await poll(api, f"/jobs/{nid}/status", lambda b: (b.get("callback") or {}).get("status") == "delivered")
        check_schema(spec, await api.get(f"/jobs/{nid}/status"), "get", "/jobs/{job_id}/status")
        assert done["result"]["statusCode"] == 204
        notification = check_schema(
            spec, await api.get(f"/notifications/{nid}"), "get", "/notifications/{notification_id}"
        )
        assert notification["status"] == "success" and notification["callback"]["status"] == "delivered"

        await poll(api, f"/notifications/{failing_id}", lambda b: b["status"] == "failed")
        bullmq = check_schema(spec, await api.get(f"/jobs/{failing_id}"), "get", "/jobs/{job_id}")
        assert bullmq["status"] == "failed" and "HTTP 404" in bullmq["error"]
        check_schema(spec, await api.get(f"/jobs/{failing_id}/status"), "get", "/jobs/{job_id}/status")
        check_schema(spec, await api.get(f"/notifications/{failing_id}"), "get", "/notifications/{notification_id}")

        cleaned = await poll(api, f"/jobs/{cleanup_id}/status", lambda b: b["status"] == "completed")
        assert set(cleaned["result"]) == {"task", "directory", "removed", "kept"}
        check_schema(spec, await api.get(f"/jobs/{cleanup_id}/status"), "get", "/jobs/{job_id}/status")

        cancelled = await poll(api, f"/jobs/{delayed_id}/status", lambda b: b["status"] == "cancelled")
        assert "nextAttemptAt" not in cancelled
        check_schema(spec, await api.get(f"/jobs/{delayed_id}/status"), "get", "/jobs/{job_id}/status")
        check_schema(spec, await api.get(f"/notifications/{delayed_id}"), "get", "/notifications/{notification_id}")

    check_schema(spec, await anon.get("/healthz"), "get", "/healthz")
    check_schema(spec, await anon.get("/readyz"), "get", "/readyz")
    # Errors, in the documented shape under their documented status.
    refused = await api.post("/jobs/sms", json={"phone": "1", "backoff": {"type": "linear"}})
    assert len(assert_error(refused, 400, "validation_error")["details"]) == 3
    check_schema(spec, refused, "post", "/jobs/sms")
    check_schema(spec, await anon.get("/jobs/x/status"), "get", "/jobs/{job_id}/status")
    check_schema(spec, await api.get("/jobs/no-such-job"), "get", "/jobs/{job_id}")
    check_schema(spec, await api.post(f"/jobs/{cleanup_id}/cancel"), "post", "/jobs/{job_id}/cancel")
