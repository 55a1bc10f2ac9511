"""A dev SMS gateway that records messages instead of sending them.

It implements Herald's SMS gateway protocol (docs/delivery.md, "SMS gateway protocol"):

    POST /messages  {"to", "body", "idempotencyKey"}
                    Authorization: Bearer TOKEN  (wrong or missing → 401)
                    Idempotency-Key: KEY
    → 200 {"id": "sms_..."}; the same key again → the same id, recorded once.

    GET /messages   → every recorded message, newest last (no auth: a local dev aid).

It also serves the dev webhook inbox (devstack/webhook_inbox.py) at /webhooks.

Each message is one JSON file in the store directory, so records survive restarts.

Run it alone: python -m devstack.sms_sink --host 127.0.0.1 --port 8026 --dir .data/sms --token T
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from common.settings import DEV_SMS_TOKEN, Settings
from devstack.webhook_inbox import webhook_inbox


class SmsRequest(BaseModel):
    to: str
    body: str
    idempotencyKey: str | None = None


class SmsStore:
    """Recorded messages: one JSON file each, indexed in memory by idempotency key."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._by_key: dict[str, dict] = {}
        for record in self.all():
            if record.get("idempotencyKey"):
                self._by_key[record["idempotencyKey"]] = record

    def all(self) -> list[dict]:
        return [json.loads(path.read_text()) for path in sorted(self.directory.glob("*.json"))]

    def find(self, key: str | None) -> dict | None:
        return self._by_key.get(key) if key else None

    def add(self, to: str, body: str, key: str | None) -> dict:
        record = {
            "id": "sms_" + secrets.token_hex(12),
            "to": to,
            "body": body,
            "idempotencyKey": key,
            "receivedAt": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        name = f"{time.time_ns():020d}-{record['id']}"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n")
        os.replace(tmp, self.directory / f"{name}.json")
        if key:
            self._by_key[key] = record
        return record


def create_app(store_dir: Path, token: str, webhook_secrets: Sequence[str] = ()) -> FastAPI:
    app = FastAPI(title="Herald dev SMS gateway sink")
    app.include_router(webhook_inbox(webhook_secrets))
    store = SmsStore(store_dir)
    expected = f"Bearer {token}".encode()

    # A dependency, so a bad token is answered 401 before the body is validated.
    def authorized(authorization: str = Header(default="")) -> None:
        if not secrets.compare_digest(authorization.encode(), expected):
            raise HTTPException(401, "invalid or missing bearer token", headers={"WWW-Authenticate": "Bearer"})

    # `async def` with no await between lookup and insert: one key, one record.
    @app.post("/messages", dependencies=[Depends(authorized)])
    async def send(message: SmsRequest, idempotency_key: str | None = Header(default=None)) -> JSONResponse:
        if idempotency_key and message.idempotencyKey and idempotency_key != message.idempotencyKey:
            raise HTTPException(400, "Idempotency-Key header and idempotencyKey differ")
        key = idempotency_key or message.idempotencyKey
        existing = store.find(key)
        if existing is not None:
            return JSONResponse({"id": existing["id"]}, headers={"Idempotent-Replayed": "true"})
        return JSONResponse({"id": store.add(message.to, message.body, key)["id"]})

    @app.get("/messages")
    async def recorded() -> list[dict]:
        return store.all()

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8026)
    parser.add_argument("--dir", type=Path, default=Path(".data/sms"))
    parser.add_argument("--token", default=os.environ.get("HERALD_SMS_GATEWAY_TOKEN", DEV_SMS_TOKEN))
    args = parser.parse_args(argv)
    print(f"SMS sink on http://{args.host}:{args.port}/messages, saving to {args.dir}", flush=True)
    # A dev tool: without HERALD_WEBHOOK_SECRET it checks against the dev secret in the data dir.
    secrets = Settings(dev_mode=True).webhook_secrets()
    uvicorn.run(create_app(args.dir, args.token, secrets), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
