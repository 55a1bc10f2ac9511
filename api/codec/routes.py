"""The payload codec over HTTP, for the Temporal Web UI (and `temporal --codec-endpoint`):
`POST /codec/encode` and `POST /codec/decode` in Temporal's remote codec protocol.

Both take and answer a `Payloads` message as protobuf JSON, `{"payloads": [{"metadata": {KEY:
BASE64}, "data": BASE64}]}`, and apply common/codec.py's codec to each payload: decode decrypts
what Herald encrypted (and passes anything else through), encode encrypts. A payload that cannot be
decrypted is a 400, as the protocol has it.

Who may call (api/core/auth.py, require_codec_caller): the admin token, as a Bearer token or HTTP Basic
password; a browser page only from an allowed origin (HERALD_CODEC_ORIGINS), which is also the one
origin CORS lets read the answers (cors.py). In dev mode the local Web UI's origin may call
without a token, as the dev server's UI sends none.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from temporalio.api.common.v1 import Payload

from api.codec.cors import PREFIX
from api.codec.models import CodecPayload, CodecPayloads, PayloadsIn
from api.core.auth import require_codec_caller
from api.core.errors import ApiError, errors
from common.codec import EncryptionCodec, UndecryptablePayload


async def get_codec(request: Request) -> EncryptionCodec:
    return request.app.state.codec


Codec = Annotated[EncryptionCodec, Depends(get_codec)]
router = APIRouter(prefix=PREFIX, tags=["codec"], dependencies=[Depends(require_codec_caller)])
SAY = {
    400: "`validation_error`: not a Payloads message, or (decode) a payload no configured key decrypts",
    401: "`unauthorized`: no or wrong admin token",
    403: "`forbidden`: a client key, or a page of an origin that is not allowed (HERALD_CODEC_ORIGINS)",
}


def _apply(convert: Callable[[Payload], Payload], body: PayloadsIn) -> CodecPayloads:
    answered = []
    for n, given in enumerate(body.payloads):
        try:
            payload = convert(Payload(metadata=given.metadata, data=given.data))
        except UndecryptablePayload as exc:
            raise ApiError(
                400, "validation_error", f"payloads.{n}: {exc}", [{"field": f"payloads.{n}", "message": str(exc)}]
            ) from exc
        answered.append(
            CodecPayload(metadata={k: _b64(v) for k, v in payload.metadata.items()}, data=_b64(payload.data))
        )
    return CodecPayloads(payloads=answered)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@router.post(
    "/encode",
    summary="Encrypt payloads (the Temporal Web UI's remote codec protocol)",
    response_description="The payloads, each encrypted under the current key",
    responses=errors(400, 401, 403, 413, say=SAY),
)
async def encode(body: PayloadsIn, codec: Codec) -> CodecPayloads:
    return _apply(codec.encrypt, body)


@router.post(
    "/decode",
    summary="Decrypt payloads (the Temporal Web UI's remote codec protocol)",
    response_description="The payloads decrypted; those that were not encrypted as given",
    responses=errors(400, 401, 403, 413, say=SAY),
)
async def decode(body: PayloadsIn, codec: Codec) -> CodecPayloads:
    return _apply(codec.decrypt, body)
