"""The payload codec: every payload Herald writes into Temporal is encrypted with AES-256-GCM.

Workflow and activity inputs and results, heartbeat details, failure details and messages, the
memo and the runs' summaries go through it (common/temporal.py gives it to every client and
worker); search attributes do not, and hold no personal data. An encrypted payload is
`nonce (12 bytes) || ciphertext+tag` of the whole original payload (its metadata and data), with
the metadata `encoding: binary/encrypted` and `encryption-key-id: <id>`, so the key that wrote it
is known when it is read back:

- Rotation: HERALD_ENCRYPTION_KEY takes several keys; the first encrypts, every one decrypts.
  Payloads written under an older key stay readable for as long as that key stays in the list.
- A payload that is not encrypted (runs started before the codec, the recorded histories in
  tests/replay) is passed through as it is.

The API serves the same codec over HTTP for the Temporal Web UI (api/codec/routes.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from common.settings import EncryptionKey

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12  # 96 bits, GCM's own size; a fresh random one for every payload


class UndecryptablePayload(ValueError):
    """An encrypted payload that none of the configured keys can read."""


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Sequence[EncryptionKey]) -> None:
        if not keys:
            raise ValueError("the codec needs at least one key")
        self._current = keys[0]
        self._ciphers = {key.id: AESGCM(key.key) for key in keys}

    @property
    def key_id(self) -> str:
        """The id of the key that encrypts."""
        return self._current.id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current.id].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: self._current.id.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before the codec, or by something else: readable as it is
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UndecryptablePayload(
                f"payload encrypted with key id {key_id!r}, which is not among HERALD_ENCRYPTION_KEY's keys "
                f"({', '.join(sorted(self._ciphers))}): add that key back (after the current one) to read it"
            )
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], None)
        except (InvalidTag, ValueError):  # ValueError: too short to hold a nonce
            raise UndecryptablePayload(
                f"payload under key id {key_id!r} does not decrypt: it was altered, or another key has that id"
            ) from None
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded
