"""Schemathesis against the app's own /openapi.json: every operation, valid and invalid input.

Each operation gets a bounded number of generated requests (valid ones, then invalid ones),
reproducibly (hypothesis derandomized, no example database), sent in-process to the ASGI app
with the credential it takes: the client key, or the admin token on /admin, /admin/* and /codec/*. Every
answer must be:

- never a 5xx (a 502/503 would mean Temporal trouble, which is not what this test is about);
- a 4xx in the error shape, `{"error": str, "message": str, "details": list}`, as JSON;
- of a status, content type, headers and body the schema documents for it
  (schemathesis' status_code, content_type, response_headers and response_schema conformance);
- for input the schema forbids, a refusal (schemathesis' negative_data_rejection).

The fuzzer's API talks to a Temporal dev server and workers of its own (this module's), not the
session's: it redrives every dead letter, triggers and pauses schedules and creates recurring
jobs, which must not reach the jobs, dead letters and schedules other tests read. Its jobs really
run: emails go to the test SMTP sink, SMS to the test gateway, cleanups in directories of their
own, and no webhook host is exempt from the SSRF guard, so an invented URL is refused or goes
nowhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from common.settings import Settings
from tests.api.helpers import ADMIN, ADMIN_TOKEN, API_KEY, AUTH, address_of, api_client, assert_error, start_dev_server
from tests.support.temporal import ENCRYPTION_KEY, running_workers

# Not one xdist group: its cases are the suite's longest chain, so each xdist process that takes some
# starts this module's server of its own (a few seconds) and the cases run in parallel.

# Generated requests per operation and generation mode (~40 of those), derandomized: 25 each keeps the
# suite within its time budget on 2 cores (50 cost about 90 s of CPU, a third of the suite's, and found
# nothing 25 did not).
EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
ERROR_KEYS = {"error", "message", "details"}


def _can_be_invalid(operation: dict[str, Any]) -> bool:
    """A body, or a parameter with a type or rule to break (any text is a valid plain string id)."""

    def constrained(parameter: dict[str, Any]) -> bool:
        schema = {k: v for k, v in parameter.get("schema", {}).items() if k not in ("title", "description")}
        return not all(choice in ({"type": "string"}, {"type": "null"}) for choice in schema.get("anyOf", [schema]))

    return "requestBody" in operation or any(constrained(p) for p in operation.get("parameters", []))


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """Each operation with valid input, and with invalid input where it can have any."""
    spec = create_app(Settings(api_keys=[API_KEY], admin_token=ADMIN_TOKEN, encryption_key=ENCRYPTION_KEY)).openapi()
    found = []
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            found.append((method.upper(), path, GenerationMode.POSITIVE))
            if _can_be_invalid(operation):
                found.append((method.upper(), path, GenerationMode.NEGATIVE))
    return found


OPERATIONS = _operations()


# ---- the fuzzer's own Temporal, workers and app ---------------------------------------------------
@pytest_asyncio.fixture(scope="module")
async def fuzz_env():
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="module")
def fuzz_settings(settings, fuzz_env, tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("fuzz")
    return settings.model_copy(
        update={
            "temporal_address": address_of(fuzz_env),
            "webhook_allow_hosts": [],
            "data_dir": root / "data",
            "temp_dir": root / "tmp",
            "log_dir": root / "logs",
            "session_dir": root / "sessions",
        }
    )


@pytest_asyncio.fixture(scope="module")
async def fuzz_api(fuzz_env, fuzz_settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_workers(fuzz_env.client, fuzz_settings), api_client(create_app(fuzz_settings)) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def schema(fuzz_api):
    """The schema the app serves at /openapi.json."""
    response = await fuzz_api.get("/openapi.json")
    assert response.status_code == 200
    return schemathesis.openapi.from_dict(response.json())


_strategies: dict[tuple[str, str, GenerationMode], Any] = {}


def _strategy(schema, method: str, path: str, mode: GenerationMode):
    key = (method, path, mode)
    if key not in _strategies:
        # The credential is fixed, so a negative case never "tests" it (test_auth_matrix does).
        auth = ADMIN if path == "/admin" or path.startswith(("/admin/", "/codec/")) else AUTH
        _strategies[key] = schema[path][method].as_strategy(generation_mode=mode, headers=auth)
    return _strategies[key]


async def _send(client: httpx.AsyncClient, case) -> httpx.Response:
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
    body: dict[str, Any] = {}
    if "json" in kwargs:
        body["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        body["content"] = data.encode() if isinstance(data, str) else data
    return await client.request(
        kwargs["method"], kwargs["url"], params=kwargs.get("params") or None, headers=kwargs.get("headers"), **body
    )


def _check_error_shape(case, response: httpx.Response) -> None:
    if response.status_code < 400 or case.method == "HEAD":
        return
    where = f"{case.method} {response.request.url} → {response.status_code}: {response.text[:500]}"
    assert response.headers.get("content-type", "").startswith("application/json"), where
    body = response.json()
    assert isinstance(body, dict) and set(body) == ERROR_KEYS, where
    assert isinstance(body["error"], str) and body["error"], where
    assert isinstance(body["message"], str) and body["message"], where
    assert isinstance(body["details"], list), where


# Values a schema cannot describe (a real phone number, a cron, a URL the SSRF guard lets through),
# swapped into some valid cases so the routes behind those checks are reached too. The URLs are in
# `.invalid`, a name DNS never resolves (RFC 6761): a webhook to one goes nowhere.
ODD_URLS = [
    "http://fuzz.invalid:99999/",
    "https://fuzz.invalid:0/",
    "http://fuzz.invalid:-1/",
    "http://[::1]:80/",
    "https://user:pw@fuzz.invalid/",
    "http://fuzz.invalid:/%0D%0AX:%201",
    "http://%0d%0a.invalid/",
]
SEEDS = {
    "phone": st.sampled_from(["+14155550100", "+447700900123", "+49 30 1234567", "+1-212-555-0199"]),
    "url": st.sampled_from(["https://hooks.fuzz.invalid/x", "http://fuzz.invalid:8080/a?b=c#d", *ODD_URLS]),
    "webhookUrl": st.sampled_from(["https://callbacks.fuzz.invalid/done", None, *ODD_URLS]),
    "cron": st.sampled_from(["0 0 1 1 *", "*/15 9-17 * * 1-5", "30 2 29 2 *"]),
    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"]),
}


def _seeded(body: Any, data: st.DataObject) -> Any:
    if isinstance(body, dict):
        return {key: data.draw(SEEDS[key]) if key in SEEDS else _seeded(value, data) for key, value in body.items()}
    return body


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS, ids=[f"{m} {p} {g.value}" for m, p, g in OPERATIONS])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
async def test_every_operation_answers_by_its_schema(fuzz_api, schema, method, path, mode, data):
    case = data.draw(_strategy(schema, method, path, mode), label="case")
    if mode == GenerationMode.POSITIVE and isinstance(case.body, dict) and data.draw(st.booleans(), label="seed"):
        case.body = _seeded(case.body, data)
    response = await _send(fuzz_api, case)
    _check_error_shape(case, response)
    if response.status_code == 413:
        # A refusal too, which schemathesis does not count as one: the generated body is over the
        # body limit (the smaller, all routes'), so the API never read it.
        assert response.json()["error"] == "payload_too_large"
        assert len(response.request.content) > Settings().max_body_bytes
        return
    case.validate_response(response, checks=CHECKS)


def test_every_operation_is_fuzzed(app):
    """The list above is the served schema's: a new route is fuzzed without being named here."""
    served = app.openapi()["paths"]
    assert {(m, p) for m, p, _ in OPERATIONS} == {(m.upper(), p) for p, methods in served.items() for m in methods}


# ---- what the fuzzer found, each pinned down ------------------------------------------------------
@pytest.mark.parametrize("cursor", ["null", "AAAA", "e30", "eyJ4IjoxfQ"])
async def test_a_cursor_that_decodes_but_is_no_page_token_is_a_400(api, cursor):
    """It was a 502: the dev server's visibility store fails an undecodable token as an internal error."""
    response = await api.get("/admin/dlq", params={"cursor": cursor}, headers=ADMIN)
    body = assert_error(response, 400, "validation_error")
    assert [d["field"] for d in body["details"]] == ["cursor"], body


async def test_a_real_cursor_still_pages(api):
    response = await api.get("/admin/dlq", params={"limit": 1}, headers=ADMIN)
    assert response.status_code == 200, response.text
    cursor = response.json()["nextCursor"]
    if cursor:  # with at least two dead letters in the session so far
        assert (await api.get("/admin/dlq", params={"limit": 1, "cursor": cursor}, headers=ADMIN)).status_code == 200


@pytest.mark.parametrize("deliver_at", [-38933, 0, 1893456000, 1893456000000, 1.5e9, "1893456000", "-1", True])
async def test_deliver_at_is_iso_8601_text_only(api, dev_env, deliver_at):
    """Numbers were accepted as Unix times (seconds or milliseconds, by size): 60000 meant 1970, so now."""
    response = await api.post("/jobs/cleanup", json={"task": "delete_temp", "deliverAt": deliver_at})
    body = assert_error(response, 400, "validation_error")
    assert [d["field"] for d in body["details"]] == ["deliverAt"], body
    assert "ISO 8601" in body["details"][0]["message"]
