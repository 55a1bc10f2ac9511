from __future__ import annotations

import httpx
import pytest

from devstack.sms_sink import create_app

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client_for(store_dir) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(store_dir, TOKEN)), base_url="http://sms-sink"
    )


@pytest.fixture
async def client(tmp_path):
    async with client_for(tmp_path) as client:
        yield client


def sms(key: str, to: str = "+15550100", body: str = "Your code is 123456") -> dict:
    return {"to": to, "body": body, "idempotencyKey": key}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
async def test_missing_or_wrong_token_is_401_json(client, headers):
    answer = await client.post("/messages", json=sms("k1"), headers=headers)
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["detail"]
    # Checked before the body: a bad token with a bad body is still 401.
    assert (await client.post("/messages", json={}, headers=headers)).status_code == 401
    assert (await client.get("/messages")).json() == []


async def test_send_returns_an_id_and_is_recorded(client):
    answer = await client.post("/messages", json=sms("k1"), headers={**AUTH, "Idempotency-Key": "k1"})
    assert answer.status_code == 200
    sms_id = answer.json()["id"]
    assert sms_id.startswith("sms_")

    [record] = (await client.get("/messages")).json()
    assert record["id"] == sms_id
    assert (record["to"], record["body"], record["idempotencyKey"]) == ("+15550100", "Your code is 123456", "k1")
    assert record["receivedAt"].endswith("+00:00")


async def test_same_idempotency_key_gives_same_id_and_one_record(client):
    headers = {**AUTH, "Idempotency-Key": "k1"}
    first = (await client.post("/messages", json=sms("k1"), headers=headers)).json()["id"]
    again = await client.post("/messages", json=sms("k1"), headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first
    other = (
        await client.post("/messages", json=sms("k2", body="second"), headers={**AUTH, "Idempotency-Key": "k2"})
    ).json()["id"]
    assert other != first

    records = (await client.get("/messages")).json()
    assert [r["id"] for r in records] == [first, other]  # newest last


async def test_key_in_body_alone_is_honoured(client):
    first = (await client.post("/messages", json=sms("k1"), headers=AUTH)).json()["id"]
    assert (await client.post("/messages", json=sms("k1"), headers=AUTH)).json()["id"] == first


async def test_header_and_body_keys_must_agree(client):
    answer = await client.post("/messages", json=sms("k1"), headers={**AUTH, "Idempotency-Key": "k2"})
    assert answer.status_code == 400


async def test_invalid_body_is_422(client):
    answer = await client.post("/messages", json={"to": "+15550100"}, headers=AUTH)
    assert answer.status_code == 422


async def test_records_and_keys_survive_a_restart(tmp_path):
    async with client_for(tmp_path) as client:
        first = (await client.post("/messages", json=sms("k1"), headers=AUTH)).json()["id"]
    async with client_for(tmp_path) as client:
        assert (await client.post("/messages", json=sms("k1"), headers=AUTH)).json()["id"] == first
        assert [r["id"] for r in (await client.get("/messages")).json()] == [first]
