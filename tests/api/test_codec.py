"""POST /codec/encode and /codec/decode: the Temporal Web UI's remote codec protocol, for the admin
token (or, in dev mode, the local Web UI's origin), with CORS for the allowed origins only."""

from __future__ import annotations

import base64
import json

import email_validator
import httpx
import pytest
from temporalio.api.common.v1 import Payload

from common.codec import EncryptionCodec
from common.settings import Settings
from tests.api.helpers import ADMIN, AUTH, api_client, assert_error
from tests.support.temporal import ENCRYPTION_KEY, OLD_ENCRYPTION_KEY

UI = "http://127.0.0.1:8233"  # the default allowed origin (HERALD_TEMPORAL_UI_URL's)
FOREIGN = "https://evil.example"
TEXT = {"message": "Your code is 424242", "to": "+14155550100"}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


async def preflight_decode(client: httpx.AsyncClient, origin: str, headers: str) -> httpx.Response:
    """A browser's CORS preflight for a POST to /codec/decode from a page at `origin` that sends `headers`."""
    return await client.options(
        "/codec/decode",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": headers},
    )


def plain_payloads(*values) -> dict:
    """Payloads JSON as the SDK's JSON converter writes them (what the UI gets after decoding)."""
    return {
        "payloads": [
            {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(json.dumps(v).encode())} for v in values
        ]
    }


async def test_encode_then_decode_gives_the_payloads_back(anon):
    encoded = await anon.post("/codec/encode", json=plain_payloads(TEXT, "two"), headers=ADMIN)
    assert encoded.status_code == 200, encoded.text
    assert encoded.headers["content-type"] == "application/json"
    sealed = encoded.json()["payloads"]
    assert [base64.b64decode(p["metadata"]["encoding"]) for p in sealed] == [b"binary/encrypted"] * 2
    assert all("encryption-key-id" in p["metadata"] for p in sealed)
    assert "424242" not in encoded.text and "424242" not in base64.b64decode(sealed[0]["data"]).decode("latin-1")
    decoded = await anon.post("/codec/decode", json={"payloads": sealed}, headers=ADMIN)
    assert decoded.status_code == 200, decoded.text
    assert decoded.json() == plain_payloads(TEXT, "two")


async def test_decode_reads_what_the_workers_wrote_and_passes_plain_payloads_through(anon, settings):
    """The SDK's codec and the endpoint are one codec: a payload from Temporal decodes over HTTP."""
    codec = EncryptionCodec(settings.encryption_keys())
    original = Payload(metadata={"encoding": b"json/plain", "messageType": b"x"}, data=b'{"a": 1}')
    [sealed] = await codec.encode([original])
    body = {
        "payloads": [
            {"metadata": {k: b64(v) for k, v in p.metadata.items()}, "data": b64(p.data)} for p in (sealed, original)
        ]
    }
    answer = await anon.post("/codec/decode", json=body, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    expected = {"metadata": {k: b64(v) for k, v in original.metadata.items()}, "data": b64(original.data)}
    assert answer.json() == {"payloads": [expected, expected]}


async def test_after_rotation_the_endpoint_decodes_old_keys_payloads(make_app):
    [old] = await EncryptionCodec(Settings(encryption_key=OLD_ENCRYPTION_KEY).encryption_keys()).encode(
        [Payload(metadata={"encoding": b"json/plain"}, data=b'"before the rotation"')]
    )
    body = {"payloads": [{"metadata": {k: b64(v) for k, v in old.metadata.items()}, "data": b64(old.data)}]}
    async with api_client(make_app(encryption_key=f"{ENCRYPTION_KEY} {OLD_ENCRYPTION_KEY}")) as rotated:
        answer = await rotated.post("/codec/decode", json=body, headers=ADMIN)
        assert base64.b64decode(answer.json()["payloads"][0]["data"]) == b'"before the rotation"'
    async with api_client(make_app(encryption_key=ENCRYPTION_KEY)) as retired:  # the old key dropped
        refused = assert_error(await retired.post("/codec/decode", json=body, headers=ADMIN), 400, "validation_error")
        assert refused["details"][0]["field"] == "payloads.0"
        assert "not among HERALD_ENCRYPTION_KEY's keys" in refused["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"payloads": [{"metadata": {"encoding": "not base64!"}, "data": ""}]},
        {"payloads": [{"metadata": {}, "data": "QQ"}]},
        {"payloads": [{"metadata": {}, "data": 5}]},
        {"payloads": [{"data": b64(b"x"), "extra": 1}]},
        {"payloads": "none"},
        {},
        [],
    ],
)
async def test_a_bad_body_is_a_400_naming_the_field(anon, body):
    for route in ("/codec/encode", "/codec/decode"):
        assert_error(await anon.post(route, json=body, headers=ADMIN), 400, "validation_error")
    assert_error(
        await anon.post(
            "/codec/decode", content=b'{"payloads": [', headers=ADMIN | {"Content-Type": "application/json"}
        ),
        400,
        "invalid_json",
    )


async def test_a_tampered_payload_is_a_400_not_a_500(anon):
    sealed = (await anon.post("/codec/encode", json=plain_payloads(TEXT), headers=ADMIN)).json()["payloads"][0]
    data = bytearray(base64.b64decode(sealed["data"]))
    data[-1] ^= 1
    body = {"payloads": [{"metadata": sealed["metadata"], "data": b64(bytes(data))}]}
    refused = assert_error(await anon.post("/codec/decode", json=body, headers=ADMIN), 400, "validation_error")
    assert "does not decrypt" in refused["message"]


# ---- who may call --------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["/codec/encode", "/codec/decode"])
async def test_only_the_admin_token_may_call(anon, route):
    assert_error(await anon.post(route, json=plain_payloads(1)), 401, "unauthorized")
    assert_error(
        await anon.post(route, json=plain_payloads(1), headers={"Authorization": "Bearer wrong-token"}),
        401,
        "unauthorized",
    )
    assert_error(await anon.post(route, json=plain_payloads(1), headers=AUTH), 403, "forbidden")
    basic = "Basic " + b64(b"operator:" + ADMIN["Authorization"].removeprefix("Bearer ").encode())
    assert (await anon.post(route, json=plain_payloads(1), headers={"Authorization": basic})).status_code == 200


async def test_a_foreign_origin_gets_no_cors_and_is_refused_even_with_the_token(anon):
    preflight = await preflight_decode(anon, FOREIGN, "content-type")
    assert_error(preflight, 403, "forbidden")
    assert not [h for h in preflight.headers if h.startswith("access-control-")]
    answer = await anon.post("/codec/decode", json=plain_payloads(1), headers=ADMIN | {"Origin": FOREIGN})
    assert_error(answer, 403, "forbidden")
    assert not [h for h in answer.headers if h.startswith("access-control-")]


async def test_the_ui_origin_gets_cors_and_its_preflight_is_answered(anon):
    preflight = await preflight_decode(anon, UI, "content-type,x-namespace,authorization")
    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["access-control-allow-origin"] == UI
    assert preflight.headers["access-control-allow-methods"] == "POST"
    allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-namespace", "authorization"} <= allowed
    assert preflight.headers["access-control-allow-credentials"] == "true"
    answer = await anon.post(
        "/codec/decode", json=plain_payloads(1), headers=ADMIN | {"Origin": UI, "X-Namespace": "default"}
    )
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == UI
    assert answer.headers["vary"] == "Origin"
    # The UI's page without a token outside dev mode: refused, but readable to it (CORS), so it can say so.
    refused = await anon.post("/codec/decode", json=plain_payloads(1), headers={"Origin": UI})
    assert_error(refused, 401, "unauthorized")
    assert refused.headers["access-control-allow-origin"] == UI


async def test_in_dev_mode_the_local_web_ui_needs_no_token(make_app, monkeypatch):
    """The dev server's UI (`make run`) sends no token; its origins are allowed in dev mode only."""
    # A dev-mode app lets email-validator accept `.test` domains, for the process: not for other tests.
    monkeypatch.setattr(email_validator, "TEST_ENVIRONMENT", email_validator.TEST_ENVIRONMENT)
    async with api_client(make_app(dev_mode=True)) as dev:
        for origin in ("http://127.0.0.1:8233", "http://localhost:8233"):
            answer = await dev.post("/codec/decode", json=plain_payloads(TEXT), headers={"Origin": origin})
            assert answer.status_code == 200, answer.text
            assert answer.headers["access-control-allow-origin"] == origin
        # Not from another page, not without any page, and a token given must be the right one.
        assert_error(
            await dev.post("/codec/decode", json=plain_payloads(1), headers={"Origin": FOREIGN}), 403, "forbidden"
        )
        assert_error(await dev.post("/codec/decode", json=plain_payloads(1)), 401, "unauthorized")
        assert_error(
            await dev.post(
                "/codec/decode", json=plain_payloads(1), headers={"Origin": UI, "Authorization": "Bearer wrong-token"}
            ),
            401,
            "unauthorized",
        )
    # An Origin header anyone can send: without a token only from this machine (the local browser).
    remote = httpx.ASGITransport(app=make_app(dev_mode=True), client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=remote, base_url="http://test") as elsewhere:
        answer = await elsewhere.post(
            "/codec/decode", json=plain_payloads(TEXT), headers={"Origin": "http://127.0.0.1:8233"}
        )
        assert_error(answer, 401, "unauthorized")


async def test_the_allowed_origins_are_a_setting(make_app):
    ui = "https://temporal.example.com"
    async with api_client(make_app(codec_origins=[ui])) as client:
        answer = await client.post("/codec/decode", json=plain_payloads(1), headers=ADMIN | {"Origin": ui})
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == ui
        assert_error(
            await client.post("/codec/decode", json=plain_payloads(1), headers=ADMIN | {"Origin": UI}), 403, "forbidden"
        )
    assert Settings(codec_origins="https://a.example, https://b.example/").codec_allowed_origins() == [
        "https://a.example",
        "https://b.example",
    ]
    assert Settings(temporal_ui_url="http://localhost:8080/namespaces").codec_allowed_origins() == [
        "http://localhost:8080"
    ]
