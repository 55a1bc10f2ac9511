"""The codec routes' bodies: a `temporal.api.common.v1.Payloads` message as protobuf JSON."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

BASE64_TEXT = "^[A-Za-z0-9+/]*={0,2}$"


def _from_base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 (standard alphabet, padded)") from None


Base64 = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    WithJsonSchema({"type": "string", "pattern": BASE64_TEXT, "contentEncoding": "base64"}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PayloadIn(_Strict):
    metadata: dict[str, Base64] = Field(default_factory=dict, description="each value base64")
    data: Base64 = Field(b"", description="base64")


class PayloadsIn(_Strict):
    """A `temporal.api.common.v1.Payloads` message as protobuf JSON."""

    payloads: list[PayloadIn]


class CodecPayload(_Strict):
    metadata: dict[str, str] = Field(
        description="each value base64, e.g. `encoding`: `YmluYXJ5L2VuY3J5cHRlZA==` (binary/encrypted)"
    )
    data: str = Field(description="base64")


class CodecPayloads(_Strict):
    """A `temporal.api.common.v1.Payloads` message as protobuf JSON."""

    payloads: list[CodecPayload]
