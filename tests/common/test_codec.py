"""The payload codec (common/codec.py): AES-256-GCM, the key id in the metadata, rotation, passthrough."""

from __future__ import annotations

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from common.codec import ENCODING, KEY_ID, NONCE_BYTES, EncryptionCodec, UndecryptablePayload
from common.logs import redact, redact_secrets_of
from common.settings import EncryptionKey, Settings
from common.temporal import data_converter
from tests.support.temporal import ENCRYPTION_KEY, OLD_ENCRYPTION_KEY

SECRET_TEXT = "Your one-time code is 481516"


def codec(*texts: str) -> EncryptionCodec:
    return EncryptionCodec([EncryptionKey.parse(t) for t in texts])


def json_payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


async def test_a_payload_goes_in_encrypted_and_comes_back_as_it_was():
    c = codec(ENCRYPTION_KEY)
    original = json_payload(SECRET_TEXT)
    [sealed] = await c.encode([original])
    assert sealed.metadata["encoding"] == ENCODING == b"binary/encrypted"
    assert sealed.metadata[KEY_ID] == c.key_id.encode()
    assert SECRET_TEXT.encode() not in sealed.data and b"json/plain" not in sealed.data
    assert len(sealed.data) == NONCE_BYTES + len(original.SerializeToString()) + 16  # nonce, ciphertext, GCM tag
    [opened] = await c.decode([sealed])
    assert opened == original


async def test_every_payload_has_a_nonce_of_its_own():
    c = codec(ENCRYPTION_KEY)
    first, second = await c.encode([json_payload(SECRET_TEXT), json_payload(SECRET_TEXT)])
    assert first.data[:NONCE_BYTES] != second.data[:NONCE_BYTES] and first.data != second.data


def test_the_key_id_is_a_digest_of_the_key_or_the_operators_own():
    derived = EncryptionKey.parse(ENCRYPTION_KEY)
    assert len(derived.id) == 16 and derived.id not in ENCRYPTION_KEY
    assert EncryptionKey.parse(ENCRYPTION_KEY).id == derived.id  # the same key, the same id, in every process
    assert EncryptionKey.parse(OLD_ENCRYPTION_KEY).id != derived.id
    assert EncryptionKey.parse(f"2025-06:{ENCRYPTION_KEY}") == EncryptionKey(id="2025-06", key=derived.key)
    assert ENCRYPTION_KEY not in repr(derived)


async def test_after_rotation_payloads_written_under_the_old_key_still_decrypt():
    before = codec(OLD_ENCRYPTION_KEY)
    [old] = await before.encode([json_payload(SECRET_TEXT)])
    # HERALD_ENCRYPTION_KEY="NEW OLD": the new key encrypts, both decrypt.
    rotated = codec(ENCRYPTION_KEY, OLD_ENCRYPTION_KEY)
    [new] = await rotated.encode([json_payload(SECRET_TEXT)])
    assert new.metadata[KEY_ID] == EncryptionKey.parse(ENCRYPTION_KEY).id.encode() != old.metadata[KEY_ID]
    assert await rotated.decode([old, new]) == [json_payload(SECRET_TEXT)] * 2
    # The same through the setting, comma- or space-separated.
    settings = Settings(encryption_key=f"{ENCRYPTION_KEY}, {OLD_ENCRYPTION_KEY}")
    assert [k.id for k in settings.encryption_keys()] == [rotated.key_id, before.key_id]


async def test_a_key_no_longer_configured_is_a_clear_error():
    [old] = await codec(OLD_ENCRYPTION_KEY).encode([json_payload(SECRET_TEXT)])
    with pytest.raises(UndecryptablePayload, match="not among HERALD_ENCRYPTION_KEY's keys") as raised:
        await codec(ENCRYPTION_KEY).decode([old])
    assert codec(OLD_ENCRYPTION_KEY).key_id in str(raised.value)


@pytest.mark.parametrize("damage", ["flip-a-bit", "truncate", "empty"])
async def test_altered_data_is_refused_not_misread(damage):
    c = codec(ENCRYPTION_KEY)
    [sealed] = await c.encode([json_payload(SECRET_TEXT)])
    data = {"flip-a-bit": bytes([sealed.data[0] ^ 1]) + sealed.data[1:], "truncate": sealed.data[:20], "empty": b""}[
        damage
    ]
    with pytest.raises(UndecryptablePayload, match="does not decrypt"):
        await c.decode([Payload(metadata=sealed.metadata, data=data)])


async def test_payloads_that_are_not_encrypted_pass_through():
    """Runs started before the codec, and the recorded histories in tests/replay, stay readable."""
    c = codec(ENCRYPTION_KEY)
    plain = [json_payload(SECRET_TEXT), Payload(metadata={"encoding": b"binary/null"}), Payload()]
    assert await c.decode(plain) == plain


async def test_the_data_converter_encrypts_values_and_failure_messages():
    converter = data_converter(Settings(encryption_key=ENCRYPTION_KEY))
    [payload] = await converter.encode([{"message": SECRET_TEXT}])
    assert payload.metadata["encoding"] == ENCODING and SECRET_TEXT.encode() not in payload.SerializeToString()
    assert await converter.decode([payload]) == [{"message": SECRET_TEXT}]
    # A failure's message (an SMTP server's answer naming the recipient, say) and its details.
    failure = Failure()
    await converter.encode_failure(ApplicationError(f"550 {SECRET_TEXT}", {"to": SECRET_TEXT}), failure)
    assert SECRET_TEXT.encode() not in failure.SerializeToString()
    assert failure.message == "Encoded failure"
    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError) and decoded.message == f"550 {SECRET_TEXT}"
    assert decoded.details == ({"to": SECRET_TEXT},)


def test_the_keys_are_masked_in_logs():
    redact_secrets_of(Settings(encryption_key=f"2025-06:{ENCRYPTION_KEY} {OLD_ENCRYPTION_KEY}"))
    line = redact(f"key {ENCRYPTION_KEY} and {OLD_ENCRYPTION_KEY}")
    assert ENCRYPTION_KEY not in line and OLD_ENCRYPTION_KEY not in line
