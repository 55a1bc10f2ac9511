"""Every refusal the API answers: 400 (one detail per bad field), 401, 404, 409, 413; and the open routes."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import pytest

from tests.api.helpers import API_KEY, AUTH, api_client, assert_error

EMAIL = {"to": "ada@example.com", "subject": "Hello", "body": "Text"}
SMS = {"phone": "+14155550100", "message": "Text"}
CLEANUP = {"task": "expire_sessions"}
WEBHOOK = {"url": "http://127.0.0.1:9/hook", "data": {"a": 1}}
CREATE = {
    "/jobs/email": EMAIL,
    "/jobs/sms": SMS,
    "/jobs/cleanup": CLEANUP,
    "/notify/email": EMAIL,
    "/notify/sms": SMS,
    "/notify/webhook": WEBHOOK,
    "/notify/batch": {"channel": "email", "items": [EMAIL]},
    "/notifications": {"type": "welcome", "userId": "u-1"},
    "/reports": {"userId": "u-1", "reportType": "notification-history"},
}
UNKNOWN = "email-00000000000000000000"
# Every route behind the client key, with a body that would otherwise be accepted.
CLIENT_ROUTES = [("POST", path, body) for path, body in CREATE.items()] + [
    ("GET", "/jobs/{id}/status", None),
    ("GET", "/jobs/{id}", None),
    ("POST", "/jobs/{id}/cancel", None),
    ("POST", "/jobs/{id}/release", None),
    ("POST", "/schedules", {"cron": "0 0 1 1 *", "job": {"type": "cleanup", "task": "delete_temp"}}),
    ("GET", "/schedules/{id}", None),
    ("DELETE", "/schedules/{id}", None),
    ("GET", "/notifications/{id}", None),
    ("GET", "/jobs/{id}/events", None),
    ("GET", "/batches/{id}", None),
    ("POST", "/batches/{id}/cancel", None),
    ("GET", "/reports/{id}/result", None),
    ("PUT", "/users/{id}", {"email": "ada@example.com"}),
    ("GET", "/users/{id}", None),
    ("GET", "/users/{id}/digests", None),
    ("POST", "/users/{id}/digests/{digestId}/send", None),
]
OPEN_ROUTES = {"/healthz", "/readyz", "/metrics"}


def _details(response) -> list[dict]:
    body = assert_error(response, 400, "validation_error")
    for detail in body["details"]:
        assert set(detail) == {"field", "message"} and detail["message"], detail
    return body["details"]


def _fields(response) -> list[str]:
    return sorted(d["field"] for d in _details(response))


# ---- 400 -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("/jobs/email", {**EMAIL, "to": "not-an-email"}, ["to"]),
        ("/jobs/email", {**EMAIL, "to": "ada@"}, ["to"]),
        ("/notify/email", {**EMAIL, "to": "a b@example.com"}, ["to"]),
        ("/jobs/sms", {**SMS, "phone": "4155550100"}, ["phone"]),
        ("/jobs/sms", {**SMS, "phone": "+1415"}, ["phone"]),
        ("/notify/sms", {**SMS, "phone": "+1-call-me"}, ["phone"]),
        ("/jobs/email", {**EMAIL, "backoff": {"type": "linear", "delay": 100}}, ["backoff.type"]),
        ("/jobs/email", {**EMAIL, "backoff": {"delay": 0}}, ["backoff.delay"]),
        ("/jobs/email", {**EMAIL, "backoff": {"type": "fixed", "jitter": True}}, ["backoff.jitter"]),
        ("/jobs/sms", {**SMS, "attempts": 0}, ["attempts"]),
        ("/jobs/sms", {**SMS, "attempts": 26}, ["attempts"]),
        ("/jobs/cleanup", {**CLEANUP, "delay": -1}, ["delay"]),
        ("/jobs/cleanup", {"task": "rm_rf"}, ["task"]),
        ("/jobs/cleanup", {**CLEANUP, "priority": 0}, ["priority"]),
        ("/jobs/cleanup", {**CLEANUP, "priority": 6}, ["priority"]),
        ("/jobs/email", {**EMAIL, "dealy": 5000}, ["dealy"]),
        ("/notify/webhook", {**WEBHOOK, "extra": 1}, ["extra"]),
        ("/jobs/email", {"to": "ada@example.com", "body": "Text"}, ["subject"]),
        ("/jobs/email", {}, ["body", "subject", "to"]),
        ("/jobs/sms", {"phone": "+14155550100"}, ["message"]),
        ("/jobs/cleanup", {}, ["task"]),
        ("/notify/webhook", {"url": "http://127.0.0.1:9/"}, ["data"]),
        ("/notify/webhook", {"data": 1}, ["url"]),
        ("/jobs/email", {**EMAIL, "subject": 123}, ["subject"]),
        ("/jobs/email", {**EMAIL, "attempts": "3"}, ["attempts"]),
        ("/jobs/email", {**EMAIL, "attempts": 2.5}, ["attempts"]),
        ("/jobs/email", {**EMAIL, "delay": "60000"}, ["delay"]),
        ("/jobs/email", {**EMAIL, "priority": True}, ["priority"]),
        ("/jobs/email", {**EMAIL, "subject": "Hi\r\nBcc: x@example.com"}, ["subject"]),
        ("/jobs/email", {**EMAIL, "subject": ""}, ["subject"]),
        ("/jobs/email", {**EMAIL, "deliverAt": "2030-01-01T00:00:00"}, ["deliverAt"]),
        ("/jobs/email", {**EMAIL, "deliverAt": "tomorrow"}, ["deliverAt"]),
        ("/jobs/email", {**EMAIL, "delay": 1000, "deliverAt": "2030-01-01T00:00:00Z"}, ["deliverAt"]),
        ("/jobs/email", {**EMAIL, "backoff": "fixed"}, ["backoff"]),
        # One detail per bad field, several at once.
        (
            "/jobs/email",
            {"to": "x", "subject": 1, "body": "b", "attempts": 0, "backoff": {"type": "no"}, "zz": 1},
            ["attempts", "backoff.type", "subject", "to", "zz"],
        ),
        ("/notify/sms", {"phone": "123", "message": "", "priority": 9}, ["message", "phone", "priority"]),
    ],
)
async def test_invalid_fields_get_one_detail_each(api, path, body, fields):
    response = await api.post(path, json=body)
    assert _fields(response) == fields, response.json()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/notify/webhook", {**WEBHOOK, "url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ("/notify/webhook", {**WEBHOOK, "url": "file:///etc/passwd"}, "url"),
        ("/notify/webhook", {**WEBHOOK, "url": "http://user:pass@example.com/"}, "url"),
        ("/notify/webhook", {**WEBHOOK, "url": "gopher://example.com/"}, "url"),
        ("/notify/webhook", {**WEBHOOK, "url": "not a url"}, "url"),
        ("/notify/webhook", {**WEBHOOK, "url": "http://10.0.0.1/hook"}, "url"),
        ("/jobs/email", {**EMAIL, "webhookUrl": "http://10.0.0.1/callback"}, "webhookUrl"),
        ("/jobs/cleanup", {**CLEANUP, "webhookUrl": "http://192.168.1.1/"}, "webhookUrl"),
        ("/notify/sms", {**SMS, "webhookUrl": "http://169.254.169.254/"}, "webhookUrl"),
        ("/notify/webhook", {**WEBHOOK, "webhookUrl": "ftp://example.com/"}, "webhookUrl"),
    ],
)
async def test_refused_destinations_are_a_400_on_their_field(api, dev_env, path, body, field):
    response = await api.post(path, json=body)
    [detail] = _details(response)
    assert detail["field"] == field and "refused" in detail["message"]


async def test_malformed_json_is_invalid_json(api):
    for raw in (b'{"to": "ada@example.com",', b"{'to': 1}", b"not json", b'{"a": 1}}'):
        response = await api.post("/jobs/email", content=raw, headers={"content-type": "application/json"})
        body = assert_error(response, 400, "invalid_json")
        assert body["details"] == []


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"42", b"null", b""])
async def test_a_body_that_is_not_an_object_is_a_400(api, raw):
    response = await api.post("/notify/sms", content=raw, headers={"content-type": "application/json"})
    [detail] = _details(response)
    assert detail["field"] == "(body)"


async def started_since(api, dev_env, since: str) -> set[str]:
    """The workflows started since `since` (an ISO time), but for a job this starts now to know when
    to read: visibility lags a start by a moment, so a read alone cannot show that nothing was
    started; once this job is listed, anything started before it is listed too."""
    good = await api.post("/jobs/cleanup", json=CLEANUP)
    assert good.status_code == 202, good.text
    job_id = good.json()["jobId"]
    end = time.monotonic() + 20
    while job_id not in (started := {w.id async for w in dev_env.client.list_workflows(f"StartTime >= '{since}'")}):
        assert time.monotonic() < end, f"{job_id} never listed"
        await asyncio.sleep(0.2)
    return started - {job_id}


async def test_nothing_is_started_for_a_refused_body(api, dev_env):
    since = datetime.now(UTC).isoformat()
    assert_error(await api.post("/jobs/email", json={**EMAIL, "to": "nope"}), 400, "validation_error")
    assert_error(
        await api.post("/notify/webhook", json={**WEBHOOK, "url": "http://10.0.0.1/"}), 400, "validation_error"
    )
    assert_error(
        await api.post("/jobs/email", content=b"{", headers={"content-type": "application/json"}), 400, "invalid_json"
    )
    assert await started_since(api, dev_env, since) == set()


# ---- 401 -----------------------------------------------------------------------------------
def test_every_client_route_is_covered_here(app):
    """If a client route is added, it must be added to CLIENT_ROUTES (and so be checked for 401)."""
    routes = {
        (
            method.upper(),
            path.replace("{job_id}", "{id}")
            .replace("{notification_id}", "{id}")
            .replace("{schedule_id}", "{id}")
            .replace("{batch_id}", "{id}")
            .replace("{userId}", "{id}"),
        )
        for path, methods in app.openapi()["paths"].items()
        for method in methods
    }
    # The admin routes and the codec take the admin token (their own tests check 401 and 403).
    client = {(m, p) for m, p in routes if p not in OPEN_ROUTES and not p.startswith(("/admin", "/codec/"))}
    assert client == {(m, p) for m, p, _ in CLIENT_ROUTES}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-key",
        f"Bearer {API_KEY}x",
        f"Bearer {API_KEY[:-1]}",
        API_KEY,
        f"Basic {API_KEY}",
        f"Token {API_KEY}",
    ],
    ids=["none", "empty", "bearer-only", "bearer-blank", "wrong", "longer", "prefix", "no-scheme", "basic", "token"],
)
async def test_every_client_route_needs_a_valid_key(anon, api, dev_env, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    since = datetime.now(UTC).isoformat()
    for method, path, body in CLIENT_ROUTES:
        response = await anon.request(method, path.replace("{id}", UNKNOWN), json=body, headers=headers)
        result = assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer", (method, path)
        assert result["details"] == []
    assert await started_since(api, dev_env, since) == set()


async def test_the_key_is_checked_before_the_body(anon):
    response = await anon.post("/jobs/email", json={"to": "not-an-email"})
    assert_error(response, 401, "unauthorized")
    # Also before the body is parsed: a caller without a key learns nothing about the route.
    for raw in (b'{"to": ', b"[]"):
        response = await anon.post("/notify/sms", content=raw, headers={"content-type": "application/json"})
        assert_error(response, 401, "unauthorized")
        response = await anon.post(
            "/notify/sms", content=raw, headers={"content-type": "application/json", "Authorization": "Bearer wrong"}
        )
        assert_error(response, 401, "unauthorized")


async def test_a_valid_key_is_accepted(anon, app):
    # The same unauthenticated client with the key: not a 401 (here a 404 for an unknown id).
    response = await anon.get(f"/jobs/{UNKNOWN}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert_error(response, 404, "not_found")


# ---- 404 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("job_id", [UNKNOWN, "nope", "x" * 300, "email-%E2%9C%93"])
async def test_unknown_ids_are_404_on_every_route(api, job_id):
    for method, path in [
        ("GET", "/jobs/{id}/status"),
        ("GET", "/jobs/{id}"),
        ("POST", "/jobs/{id}/cancel"),
        ("POST", "/jobs/{id}/release"),
        ("GET", "/notifications/{id}"),
    ]:
        response = await api.request(method, path.replace("{id}", job_id))
        assert_error(response, 404, "not_found")


async def test_an_unknown_route_is_a_json_404(api):
    assert_error(await api.get("/nowhere"), 404, "not_found")
    assert_error(await api.get("/jobs/email"), 404, "not_found")


async def test_wrong_method_is_a_json_405(api):
    assert_error(await api.delete("/jobs/email"), 405, "method_not_allowed")


# ---- 413 -----------------------------------------------------------------------------------
async def test_body_over_the_limit_is_413(make_app, workers):
    small = make_app(max_body_bytes=400)
    fits = {**EMAIL, "body": "x" * 200}
    too_big = {**EMAIL, "body": "x" * 500}
    async with api_client(small, headers=AUTH) as api:
        assert (await api.post("/jobs/email", json=fits)).status_code == 202
        body = assert_error(await api.post("/jobs/email", json=too_big), 413, "payload_too_large")
        assert "400" in body["message"]
        # Even without a key or on a refused body: the size is checked first.
        assert_error(
            await api.post("/notify/webhook", json={"url": "x", "data": "y" * 1000}, headers={"Authorization": ""}),
            413,
            "payload_too_large",
        )

        # Chunked, with no Content-Length: counted as it streams in.
        async def chunks():
            yield b'{"to": "ada@example.com", "subject": "Hello", "body": "'
            for _ in range(10):
                yield b"y" * 100
            yield b'"}'

        request = api.build_request("POST", "/jobs/email", content=chunks())
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        assert_error(await api.send(request), 413, "payload_too_large")

        async def small_chunks():
            yield json.dumps(fits).encode()

        assert (
            await api.post("/jobs/email", content=small_chunks(), headers={"content-type": "application/json"})
        ).status_code == 202


async def test_default_limit_is_256_kib(api):
    big = {"url": "http://127.0.0.1:9/", "data": "z" * (256 * 1024)}
    assert_error(await api.post("/notify/webhook", json=big), 413, "payload_too_large")


# ---- open routes -----------------------------------------------------------------------------
async def test_health_docs_and_openapi_are_open(anon, settings):
    response = await anon.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    response = await anon.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "temporal": settings.temporal_address}
    response = await anon.get("/docs")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    spec = (await anon.get("/openapi.json")).json()
    assert {
        "/jobs/email",
        "/jobs/sms",
        "/jobs/cleanup",
        "/notify/email",
        "/notify/sms",
        "/notify/webhook",
        "/jobs/{job_id}/status",
        "/jobs/{job_id}",
        "/jobs/{job_id}/cancel",
    } <= set(spec["paths"])
