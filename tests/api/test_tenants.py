"""Tenants (docs/tenants.md): every client route, walked with two tenants' keys.

Tenant A (`acme`, two keys) creates one of everything; tenant B (`globex`) then calls every client
route of the OpenAPI schema on A's ids and gets exactly what an unknown id of the same shape gets
(404, the same body), or its own things (a creating POST with A's Idempotency-Key makes B's own job).
The route list comes from app.openapi(): a route that is neither walked here nor listed as
tenant-free (open, admin, codec) fails the test, so a new client route must say how it is isolated.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from temporalio.common import SearchAttributeKey

from common.tenants import bare_key_tenant
from tests.api.helpers import (
    ADMIN,
    API_KEY,
    api_client,
    assert_error,
    failed_webhook,
    listed,
    new_number,
    poll,
    until_final,
)

ACME_1, ACME_2, GLOBEX = "key-acme-1", "key-acme-2", "key-globex"
KEYS = [API_KEY, f"acme={ACME_1}", f"acme={ACME_2}", f"globex={GLOBEX}"]
HOUR_MS = 3_600_000
EMAIL = {"to": "ada@example.com", "subject": "Hi", "body": "hello"}
TENANT = SearchAttributeKey.for_keyword("HeraldTenant")
# Every route that answers no client key: open, the admin token's (which sees every tenant), the codec.
TENANT_FREE_PREFIXES = ("/admin", "/codec")
TENANT_FREE = {"/healthz", "/readyz", "/metrics"}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def tenants_app(make_app):
    return make_app(api_keys=KEYS)


class Walk:
    """Calls by template (`GET /jobs/{job_id}`), so the test knows which schema routes it exercised."""

    def __init__(self, app: Any) -> None:
        self.app, self.exercised = app, set()

    async def call(self, key: str, method: str, template: str, ids: dict[str, str], **kwargs: Any) -> httpx.Response:
        self.exercised.add(f"{method} {template}")
        path = template.format(**ids)
        async with api_client(self.app, headers=_bearer(key)) as client:
            return await client.request(method, path, **kwargs)


def _same_as_unknown(foreign: httpx.Response, unknown: httpx.Response, foreign_id: str, unknown_id: str) -> None:
    """Another tenant's id is answered exactly as an unknown id is: status and body (ids aside)."""
    assert foreign.status_code == 404, foreign.text
    assert unknown.status_code == 404, unknown.text
    assert foreign.json() == {**unknown.json(), "message": unknown.json()["message"].replace(unknown_id, foreign_id)}


def _unknown_like(some_id: str) -> str:
    """An id of the same shape that names nothing (hex digits swapped for other hex digits)."""
    return re.sub(r"[0-9a-f]{20,}", lambda m: uuid.uuid4().hex[: len(m.group())].ljust(len(m.group()), "0"), some_id)


async def test_another_tenants_ids_are_unknown_on_every_client_route(tenants_app, workers):
    walk = Walk(tenants_app)
    a = functools_partial(walk.call, ACME_1)
    a2 = functools_partial(walk.call, ACME_2)
    b = functools_partial(walk.call, GLOBEX)
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    later = {"delay": HOUR_MS}

    # ---- A creates one of everything (each POST with an Idempotency-Key B will reuse) --------------
    creating: dict[str, dict[str, Any]] = {
        "/jobs/email": EMAIL | later,
        "/jobs/sms": {"phone": new_number(), "message": "hi"} | later,
        "/jobs/cleanup": {"task": "delete_temp"} | later,
        "/notify/email": EMAIL | later,
        "/notify/sms": {"phone": new_number(), "message": "hi"} | later,
        "/notify/webhook": {"url": "https://example.com/hook", "data": {"n": 1}} | later,
        "/notify/batch": {"channel": "email", "items": [EMAIL, EMAIL]} | later,
        "/schedules": {"cron": "0 9 * * *", "job": {"type": "email", **EMAIL}},
        "/reports": {"userId": user_id, "reportType": "notification-history"},
        "/notifications": {"type": "welcome", "userId": user_id},
    }
    put = await a("PUT", "/users/{userId}", {"userId": user_id}, json={"email": "acme-user@example.com"})
    assert put.status_code == 200, put.text
    made: dict[str, dict[str, Any]] = {}
    for path, body in creating.items():
        key = {"Idempotency-Key": f"same-key-{uuid.uuid4().hex[:6]}"}
        first = await a("POST", path, {}, json=body, headers=key)
        assert first.status_code in (201, 202), (path, first.text)
        # The same Idempotency-Key and body from the other tenant: not A's answer replayed, its own.
        other = await b("POST", path, {}, json=body, headers=key)
        assert other.status_code == first.status_code, (path, other.text)
        assert "idempotency-replayed" not in other.headers
        assert other.json() != first.json(), path
        made[path] = first.json()
    job_id = made["/jobs/email"]["jobId"]
    notification_id = made["/notify/email"]["notificationId"]
    batch_id = made["/notify/batch"]["batchId"]
    item_id = made["/notify/batch"]["jobIds"][0]
    schedule_id = made["/schedules"]["scheduleId"]
    report_id = made["/reports"]["jobId"]
    typed_id = made["/notifications"]["jobId"]
    # A's typed notification reaches A's user (the worker reads the user in A's scope), and A's report
    # is built; both are A's on every route.
    assert (await until_final_as(tenants_app, ACME_2, typed_id))["status"] == "completed"
    await poll_as(tenants_app, ACME_1, f"/jobs/{report_id}", lambda body: body["status"] == "completed")

    # ---- B on every route that names an id of A's --------------------------------------------------
    by_id: list[tuple[str, str, dict[str, str], dict[str, Any]]] = [
        ("GET", "/jobs/{job_id}/status", {"job_id": job_id}, {}),
        ("GET", "/jobs/{job_id}/status", {"job_id": item_id}, {}),
        ("GET", "/jobs/{job_id}/status", {"job_id": job_id}, {"params": {"wait": 1}}),  # long poll
        ("GET", "/jobs/{job_id}/events", {"job_id": job_id}, {}),
        ("GET", "/jobs/{job_id}/events", {"job_id": item_id}, {}),
        ("GET", "/jobs/{job_id}", {"job_id": job_id}, {}),
        ("GET", "/jobs/{job_id}", {"job_id": report_id}, {}),
        ("GET", "/jobs/{job_id}", {"job_id": item_id}, {}),
        ("POST", "/jobs/{job_id}/cancel", {"job_id": job_id}, {}),
        ("POST", "/jobs/{job_id}/cancel", {"job_id": item_id}, {}),
        ("POST", "/jobs/{job_id}/cancel", {"job_id": batch_id}, {}),
        ("POST", "/jobs/{job_id}/release", {"job_id": job_id}, {}),
        ("POST", "/jobs/{job_id}/release", {"job_id": item_id}, {}),
        ("GET", "/notifications/{notification_id}", {"notification_id": notification_id}, {}),
        ("GET", "/notifications/{notification_id}", {"notification_id": typed_id}, {}),
        ("GET", "/batches/{batch_id}", {"batch_id": batch_id}, {}),
        ("POST", "/batches/{batch_id}/cancel", {"batch_id": batch_id}, {}),
        ("GET", "/schedules/{schedule_id}", {"schedule_id": schedule_id}, {}),
        ("DELETE", "/schedules/{schedule_id}", {"schedule_id": schedule_id}, {}),
        ("GET", "/reports/{job_id}/result", {"job_id": report_id}, {}),
        ("GET", "/users/{userId}", {"userId": user_id}, {}),
        ("GET", "/users/{userId}/digests", {"userId": user_id}, {}),
    ]
    for method, template, ids, kwargs in by_id:
        [(name, foreign_id)] = ids.items()
        unknown_id = _unknown_like(foreign_id) if name != "userId" else f"nobody-{uuid.uuid4().hex[:8]}"
        foreign = await b(method, template, ids, **kwargs)
        unknown = await b(method, template, {name: unknown_id}, **kwargs)
        _same_as_unknown(foreign, unknown, foreign_id, unknown_id)

    # A's open digest: B cannot send it, as it cannot send an unknown one (both: no such user of B's).
    digesting = {"email": "acme-user@example.com", "digest": {"topics": ["orders"], "every": 3600}}
    assert (await a("PUT", "/users/{userId}", {"userId": user_id}, json=digesting)).status_code == 200
    digested = EMAIL | {"userId": user_id, "topic": "orders"}
    digested_id = (await a("POST", "/jobs/email", {}, json=digested)).json()["jobId"]
    in_digest = await poll_as(tenants_app, ACME_1, f"/jobs/{digested_id}/status", lambda body: "digestId" in body)
    digest_id = in_digest["digestId"]
    send = "/users/{userId}/digests/{digestId}/send"
    foreign = await b("POST", send, {"userId": user_id, "digestId": digest_id})
    unknown_digest = _unknown_like(digest_id)
    unknown = await b("POST", send, {"userId": user_id, "digestId": unknown_digest})
    _same_as_unknown(foreign, unknown, digest_id, unknown_digest)
    assert (await a2("GET", "/users/{userId}/digests", {"userId": user_id})).json()["digests"][0]["items"] == 1

    # B's own user of the same userId is another user: A's is untouched, and B's typed notification
    # for that userId (before B's PUT) finds no user of B's.
    b_typed = await b("POST", "/notifications", {}, json={"type": "welcome", "userId": f"{user_id}-x"})
    assert b_typed.status_code == 202
    mine = await b("PUT", "/users/{userId}", {"userId": user_id}, json={"email": "globex-user@example.com"})
    assert mine.status_code == 200 and mine.json()["email"] == "globex-user@example.com"
    theirs = await a2("GET", "/users/{userId}", {"userId": user_id})
    assert theirs.status_code == 200 and theirs.json()["email"] == "acme-user@example.com"
    # B, with a user of that id now, still cannot send A's digest: it is not among B's user's digests.
    foreign = await b("POST", send, {"userId": user_id, "digestId": digest_id})
    unknown = await b("POST", send, {"userId": user_id, "digestId": unknown_digest})
    _same_as_unknown(foreign, unknown, digest_id, unknown_digest)
    assert (await a("POST", send, {"userId": user_id, "digestId": digest_id})).status_code == 202

    # ---- A still has all of it, from either of its keys ------------------------------------------
    assert (await a2("GET", "/jobs/{job_id}/status", {"job_id": job_id})).json()["status"] == "delayed"
    assert (await a2("GET", "/batches/{batch_id}", {"batch_id": batch_id})).status_code == 200
    assert (await a2("GET", "/schedules/{schedule_id}", {"schedule_id": schedule_id})).status_code == 200
    assert (await a("GET", "/reports/{job_id}/result", {"job_id": report_id})).status_code == 200

    # ---- every client route of the schema was walked -----------------------------------------------
    schema_routes = {
        f"{method.upper()} {path}"
        for path, operations in tenants_app.openapi()["paths"].items()
        for method in operations
    }
    tenant_free = {
        route
        for route in schema_routes
        if route.split(" ", 1)[1] in TENANT_FREE or route.split(" ", 1)[1].startswith(TENANT_FREE_PREFIXES)
    }
    not_walked = schema_routes - walk.exercised - tenant_free
    assert not not_walked, f"client routes without a tenant check in this walk: {sorted(not_walked)}"

    # Clean up what would otherwise run for an hour (A's own keys may).
    assert (await a("DELETE", "/schedules/{schedule_id}", {"schedule_id": schedule_id})).status_code == 200
    assert (await a("POST", "/batches/{batch_id}/cancel", {"batch_id": batch_id})).status_code == 202


def functools_partial(call: Callable[..., Awaitable[httpx.Response]], key: str) -> Callable[..., Awaitable[Any]]:
    async def bound(*args: Any, **kwargs: Any) -> httpx.Response:
        return await call(key, *args, **kwargs)

    return bound


async def until_final_as(app: Any, key: str, job_id: str) -> dict:
    async with api_client(app, headers=_bearer(key)) as client:
        return await until_final(client, job_id)


async def poll_as(app: Any, key: str, path: str, done: Callable[[dict], bool]) -> dict:
    async with api_client(app, headers=_bearer(key)) as client:
        return await poll(client, path, done)


async def test_runs_carry_their_tenant_and_the_admin_filters_by_it(tenants_app, workers, dev_env):
    async with (
        api_client(tenants_app, headers=_bearer(ACME_1)) as acme,
        api_client(tenants_app, headers=_bearer(GLOBEX)) as globex,
    ):
        a_job = (await acme.post("/jobs/email", json=EMAIL | {"delay": HOUR_MS})).json()["jobId"]
        b_job = (await globex.post("/jobs/email", json=EMAIL | {"delay": HOUR_MS})).json()["jobId"]
        described = await dev_env.client.get_workflow_handle(a_job).describe()
        assert described.typed_search_attributes.get(TENANT) == "acme"  # the Web UI's filter
        admin = api_client(tenants_app, headers=ADMIN)
        async with admin:
            only_acme = await admin.get("/admin/jobs", params={"tenant": "acme", "limit": 100})
            assert only_acme.status_code == 200
            items = only_acme.json()["items"]
            assert {item["tenant"] for item in items} == {"acme"}
            assert a_job in {item["jobId"] for item in items} and b_job not in {item["jobId"] for item in items}
            every = (await admin.get("/admin/jobs", params={"limit": 100})).json()["items"]
            assert {a_job, b_job} <= {item["jobId"] for item in every}
            stats = await admin.get("/admin/stats", params={"tenant": "globex"})
            assert stats.status_code == 200 and stats.json()["counts"]["email"]["delayed"] >= 1
            bad = await admin.get("/admin/jobs", params={"tenant": "Not A Tenant"})
            assert bad.status_code == 400 and bad.json()["error"] == "validation_error"
            cleanup = {"cron": "0 9 * * *", "job": {"type": "cleanup", "task": "delete_temp"}}
            schedule = (await globex.post("/schedules", json=cleanup)).json()
            # Visibility lists a new schedule a moment later.
            listed = await poll(
                admin,
                "/admin/schedules?tenant=globex",
                lambda body: schedule["scheduleId"] in {item["id"] for item in body["items"]},
            )
            assert {item["tenant"] for item in listed["items"]} == {"globex"}
            assert schedule["scheduleId"] not in {
                item["id"] for item in (await admin.get("/admin/schedules", params={"tenant": "acme"})).json()["items"]
            }
            assert (await globex.delete(f"/schedules/{schedule['scheduleId']}")).status_code == 200
        for client, job in ((acme, a_job), (globex, b_job)):
            assert (await client.post(f"/jobs/{job}/cancel")).status_code == 202


async def test_a_redrive_keeps_the_tenant_and_the_dlq_filters_by_it(tenants_app, workers, dev_env):
    from tests.support.http_receiver import Answer, HttpReceiver

    async with (
        api_client(tenants_app, headers=_bearer(GLOBEX)) as globex,
        api_client(tenants_app, headers=ADMIN) as admin,
    ):
        with HttpReceiver([Answer(404, {"error": "no"}), Answer(200, {})]) as receiver:
            # /notify/webhook refuses local targets; the session allows the receiver's host.
            response = await globex.post("/notify/webhook", json={"url": receiver.url, "data": {"n": 1}, "attempts": 1})
            assert response.status_code == 202, response.text
            job_id = response.json()["notificationId"]
            await poll(globex, f"/notifications/{job_id}", lambda body: body["status"] == "failed")
            entries = await poll(
                admin, "/admin/dlq?tenant=globex&limit=500", lambda body: job_id in {i["jobId"] for i in body["items"]}
            )
            assert {item["tenant"] for item in entries["items"]} == {"globex"}
            acme_dlq = (await admin.get("/admin/dlq", params={"tenant": "acme", "limit": 500})).json()["items"]
            assert job_id not in {item["jobId"] for item in acme_dlq}
            assert (await admin.post(f"/admin/dlq/{job_id}/retry")).status_code == 202
            described = await dev_env.client.get_workflow_handle(job_id).describe()
            assert described.typed_search_attributes.get(TENANT) == "globex"
            final = await until_final(globex, job_id)
            assert final["status"] == "completed"


async def test_a_bulk_redrive_of_one_tenant_redrives_only_its_dead_letters(tenants_app, workers):
    """`POST /admin/dlq/retry {"tenant": …}` (what the dashboard's "Redrive all" sends under a tenant
    filter): the other tenant's dead letter stays as it was; a name not in HERALD_API_KEYS is a 400."""
    from tests.support.http_receiver import Answer, HttpReceiver

    async with (
        api_client(tenants_app, headers=_bearer(ACME_1)) as acme,
        api_client(tenants_app, headers=_bearer(GLOBEX)) as globex,
        api_client(tenants_app, headers=ADMIN) as admin,
    ):
        with (
            HttpReceiver([Answer(404), Answer(200, {})]) as acme_hook,
            HttpReceiver([Answer(404), Answer(200, {})]) as globex_hook,
        ):
            acme_job = await failed_webhook(acme, acme_hook.url, attempts=1)
            globex_job = await failed_webhook(globex, globex_hook.url, attempts=1)
            await listed(admin, acme_job, tenant="acme")
            globex_entry = await listed(admin, globex_job, tenant="globex")

            for unknown in ("initech", "Not A Tenant"):
                assert_error(await admin.post("/admin/dlq/retry", json={"tenant": unknown}), 400, "validation_error")
            response = await admin.post("/admin/dlq/retry", json={"tenant": "acme"})
            assert response.status_code == 200, response.text
            assert response.json() == {"redriven": 1}

            # acme's runs again from the start: the receiver's second answer completes it in one attempt.
            final = await until_final(acme, acme_job)
            assert final["status"] == "completed" and final["attempts"] == 1, final
            assert len(acme_hook.received) == 2
            await listed(admin, acme_job, present=False, tenant="acme")
            # globex's was not touched: still listed as it was, still failed, its receiver called once.
            assert await listed(admin, globex_job, tenant="globex") == globex_entry
            assert (await globex.get(f"/jobs/{globex_job}/status")).json()["status"] == "failed"
            assert len(globex_hook.received) == 1
        assert (await admin.delete(f"/admin/dlq/{globex_job}")).status_code == 200


async def test_the_sms_throttle_counts_per_tenant(make_app, workers):
    app = make_app(api_keys=KEYS, sms_per_hour=2)
    number = new_number()
    async with api_client(app, headers=_bearer(ACME_1)) as acme, api_client(app, headers=_bearer(GLOBEX)) as globex:
        body = {"phone": number, "message": "hi", "delay": HOUR_MS}
        first = [await acme.post("/notify/sms", json=body) for _ in range(2)]
        assert [r.status_code for r in first] == [202, 202]
        assert (await acme.post("/notify/sms", json=body)).status_code == 429
        # The other tenant's quota of the same number is its own.
        assert (await globex.post("/notify/sms", json=body)).status_code == 202
        for response in first:
            await acme.post(f"/jobs/{response.json()['notificationId']}/cancel")


async def test_a_run_recorded_before_tenants_is_the_default_tenants(make_app, workers, dev_env, settings):
    """A run with no tenant recorded (started before this change) stays readable by the deployment's
    default tenant (its first entry: here the session's single bare key) and by no other."""
    from api.jobs.models import JobOptions
    from api.jobs.starter import job_spec, new_job_id, start_job
    from common.jobs import email_job
    from tests.support.temporal import herald_client

    spec = job_spec(new_job_id("email"), "email", "jobs", JobOptions(delay=HOUR_MS), settings, EMAIL["to"], tenant=None)
    started = await start_job(herald_client(dev_env), email_job(spec, EMAIL["to"], "old", "body"))
    app = make_app(api_keys=KEYS)
    async with (
        api_client(app, headers=_bearer(API_KEY)) as default,
        api_client(app, headers=_bearer(GLOBEX)) as globex,
        api_client(app, headers=ADMIN) as admin,
    ):
        assert (await default.get(f"/jobs/{started.job_id}")).status_code == 200
        assert (await globex.get(f"/jobs/{started.job_id}")).status_code == 404
        listed = (await admin.get("/admin/jobs", params={"tenant": bare_key_tenant(API_KEY), "limit": 100})).json()
        assert started.job_id in {item["jobId"] for item in listed["items"]}
        assert (await default.post(f"/jobs/{started.job_id}/cancel")).status_code == 202


async def test_the_api_counts_accepted_jobs_per_configured_tenant(tenants_app, workers):
    async with api_client(tenants_app, headers=_bearer(ACME_2)) as acme:
        job_id = (await acme.post("/jobs/email", json=EMAIL | {"delay": HOUR_MS})).json()["jobId"]
        text = (await acme.get("/metrics")).text
        assert re.search(r'herald_jobs_accepted_total\{tenant="acme",type="email"\} [1-9]', text), text[:2000]
        assert (await acme.post(f"/jobs/{job_id}/cancel")).status_code == 202
