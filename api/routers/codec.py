"""The payload codec over HTTP, for the Temporal Web UI (and `temporal --codec-endpoint`):
`POST /codec/encode` and `POST /codec/decode` in Temporal's remote codec protocol.

Both take and answer a `Payloads` message as protobuf JSON, `{"payloads": [{"metadata": {KEY:
BASE64}, "data": BASE64}]}`, and apply common/codec.py's codec to each payload: decode decrypts
what Herald encrypted (and passes anything else through), encode encrypts. A payload that cannot be
decrypted is a 400, as the protocol has it.

Who may call (api/deps.py, require_codec_caller): the admin token, as a Bearer token or HTTP Basic
password; a browser page only from an allowed origin (HERALD_CODEC_ORIGINS), which is also the one
origin CORS lets read the answers (CodecCors below). In dev mode the local Web UI's origin may call
without a token, as the dev server's UI sends none.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.api.common.v1 import Payload

from api.deps import FOREIGN_ORIGIN, require_codec_caller
from api.errors import ApiError
from api.responses import errors
from common.codec import EncryptionCodec, UndecryptablePayload
from common.settings import Settings

PREFIX = "/codec"
# What the Web UI sends: Content-Type and X-Namespace, and Authorization when it passes a token.
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"
PREFLIGHT_MAX_AGE = "600"
BASE64_TEXT = "^[A-Za-z0-9+/]*={0,2}$"


def _from_base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 (standard alphabet, padded)") from None


Base64 = Annotated[bytes, BeforeValidator(_from_base64),
                   WithJsonSchema({"type": "string", "pattern": BASE64_TEXT, "contentEncoding": "base64"})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PayloadIn(_Strict):
    metadata: dict[str, Base64] = Field(default_factory=dict, description="each value base64")
    data: Base64 = Field(b"", description="base64")


class PayloadsIn(_Strict):
    """A `temporal.api.common.v1.Payloads` message as protobuf JSON."""

    payloads: list[PayloadIn]


class CodecPayload(_Strict):
    metadata: dict[str, str] = Field(description="each value base64, e.g. `encoding`: "
                                                 "`YmluYXJ5L2VuY3J5cHRlZA==` (binary/encrypted)")
    data: str = Field(description="base64")


class CodecPayloads(_Strict):
    """A `temporal.api.common.v1.Payloads` message as protobuf JSON."""

    payloads: list[CodecPayload]


def get_codec(request: Request) -> EncryptionCodec:
    return request.app.state.codec


Codec = Annotated[EncryptionCodec, Depends(get_codec)]
router = APIRouter(prefix=PREFIX, tags=["codec"], dependencies=[Depends(require_codec_caller)])
SAY = {400: "`validation_error`: not a Payloads message, or (decode) a payload no configured key decrypts",
       401: "`unauthorized`: no or wrong admin token",
       403: "`forbidden`: a client key, or a page of an origin that is not allowed (HERALD_CODEC_ORIGINS)"}


def _apply(convert: Callable[[Payload], Payload], body: PayloadsIn) -> CodecPayloads:
    answered = []
    for n, given in enumerate(body.payloads):
        try:
            payload = convert(Payload(metadata=given.metadata, data=given.data))
        except UndecryptablePayload as exc:
            raise ApiError(400, "validation_error", f"payloads.{n}: {exc}",
                           [{"field": f"payloads.{n}", "message": str(exc)}]) from exc
        answered.append(CodecPayload(metadata={k: _b64(v) for k, v in payload.metadata.items()},
                                     data=_b64(payload.data)))
    return CodecPayloads(payloads=answered)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@router.post("/encode", summary="Encrypt payloads (the Temporal Web UI's remote codec protocol)",
             response_description="The payloads, each encrypted under the current key",
             responses=errors(400, 401, 403, 413, say=SAY))
async def encode(body: PayloadsIn, codec: Codec) -> CodecPayloads:
    return _apply(codec.encrypt, body)


@router.post("/decode", summary="Decrypt payloads (the Temporal Web UI's remote codec protocol)",
             response_description="The payloads decrypted; those that were not encrypted as given",
             responses=errors(400, 401, 403, 413, say=SAY))
async def decode(body: PayloadsIn, codec: Codec) -> CodecPayloads:
    return _apply(codec.decrypt, body)


class CodecCors:
    """CORS for the codec routes, for the allowed origins only: preflights answered here (before any
    credential: a browser sends none with them), and every answer to an allowed page marked readable
    by it, its 401s too. A page of another origin gets no CORS header: the browser keeps the answer
    from it (and api/deps.py refuses its request with a 403)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.origins = set(settings.codec_allowed_origins())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX + "/"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            return await self.app(scope, receive, send)
        allowed = origin in self.origins
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            return await self._preflight(send, origin if allowed else None)
        if not allowed:
            return await self.app(scope, receive, send)

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_cors_headers(origin)]
            await send(message)

        await self.app(scope, receive, marked)

    @staticmethod
    async def _preflight(send: Send, origin: str | None) -> None:
        if origin is None:
            body = json.dumps({"error": "forbidden", "message": FOREIGN_ORIGIN, "details": []}).encode()
            headers = [(b"content-type", b"application/json")]
            status = 403
        else:
            body = b""
            headers = [*_cors_headers(origin), (b"access-control-allow-methods", b"POST"),
                       (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                       (b"access-control-max-age", PREFLIGHT_MAX_AGE.encode())]
            status = 204
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    # Credentials: the Web UI can send the browser's HTTP Basic login to the API with its requests
    # (TEMPORAL_CODEC_INCLUDE_CREDENTIALS), which needs the exact origin, never `*`.
    return [(b"access-control-allow-origin", origin.encode()), (b"access-control-allow-credentials", b"true"),
            (b"vary", b"Origin")]
