"""No per-process webhook secret or payload key outside dev mode: without HERALD_WEBHOOK_SECRET or
HERALD_ENCRYPTION_KEY, `python -m worker` and `python -m api` refuse to start (before connecting to
Temporal) and say how to make one; in dev mode each is generated once into the data dir and reused."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import EncryptionKeyError, MissingWebhookSecret, Settings
from tests.support.temporal import ENCRYPTION_KEY, OLD_ENCRYPTION_KEY, WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[2]


def test_outside_dev_mode_a_missing_secret_is_an_error_and_nothing_is_written(tmp_path):
    settings = Settings(data_dir=tmp_path, dev_mode=False, encryption_key=ENCRYPTION_KEY)
    with pytest.raises(MissingWebhookSecret, match="HERALD_WEBHOOK_SECRET") as raised:
        settings.webhook_secrets()
    assert "whsec_" in str(raised.value) and "token_bytes(32)" in str(raised.value)
    with pytest.raises(MissingWebhookSecret):
        settings.require_secrets()
    with pytest.raises(MissingWebhookSecret):
        Settings(data_dir=tmp_path, webhook_secret=" , ").webhook_secrets()
    assert not (tmp_path / "webhook_secret").exists()
    Settings(data_dir=tmp_path, webhook_secret="whsec_dGVzdA==", encryption_key=ENCRYPTION_KEY).require_secrets()


def test_outside_dev_mode_a_missing_encryption_key_is_an_error_and_nothing_is_written(tmp_path):
    settings = Settings(data_dir=tmp_path, dev_mode=False, webhook_secret=WEBHOOK_SECRET)
    with pytest.raises(EncryptionKeyError, match="HERALD_ENCRYPTION_KEY is not set") as raised:
        settings.require_secrets()
    assert "token_bytes(32)" in str(raised.value)
    with pytest.raises(EncryptionKeyError):
        Settings(data_dir=tmp_path, encryption_key=" , ").encryption_keys()
    assert not (tmp_path / "encryption_key").exists()


@pytest.mark.parametrize("dev_mode", [False, True])
@pytest.mark.parametrize(
    "bad",
    [
        "not base64!",
        base64.b64encode(b"16 bytes only...").decode(),
        f"{ENCRYPTION_KEY} {ENCRYPTION_KEY}",
        f"a:{ENCRYPTION_KEY} a:{OLD_ENCRYPTION_KEY}",
    ],
    ids=["not-base64", "too-short", "same-key-twice", "same-id-twice"],
)
def test_a_malformed_encryption_key_is_an_error_in_dev_mode_too(tmp_path, dev_mode, bad):
    with pytest.raises(EncryptionKeyError, match="HERALD_ENCRYPTION_KEY"):
        Settings(
            data_dir=tmp_path, dev_mode=dev_mode, webhook_secret=WEBHOOK_SECRET, encryption_key=bad
        ).require_secrets()


def test_in_dev_mode_one_secret_and_one_key_are_generated_once_and_reused(tmp_path):
    first = Settings(data_dir=tmp_path, dev_mode=True)
    first.require_secrets()
    [secret] = first.webhook_secrets()
    assert secret.startswith("whsec_")
    assert Settings(data_dir=tmp_path, dev_mode=True).webhook_secrets() == [secret]
    assert (tmp_path / "webhook_secret").read_text().strip() == secret
    [key] = first.encryption_keys()
    assert len(key.key) == 32 and Settings(data_dir=tmp_path, dev_mode=True).encryption_keys() == [key]
    assert base64.b64decode((tmp_path / "encryption_key").read_text().strip()) == key.key
    assert oct((tmp_path / "encryption_key").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("module", ["worker", "api"])
@pytest.mark.parametrize("missing", ["HERALD_WEBHOOK_SECRET", "HERALD_ENCRYPTION_KEY"])
def test_the_process_refuses_to_start_without_a_secret_outside_dev_mode(module, missing, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    # Nothing listens on port 9: a process that tried to connect would wait, not exit.
    env |= {
        "HERALD_DEV_MODE": "false",
        "HERALD_DATA_DIR": str(tmp_path),
        "HERALD_API_KEYS": "k",
        "HERALD_TEMPORAL_ADDRESS": "127.0.0.1:9",
        "HERALD_WORKER_METRICS_PORT": "0",
        "HERALD_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "HERALD_ENCRYPTION_KEY": ENCRYPTION_KEY,
    }
    del env[missing]
    done = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "refusing to start" in done.stderr and missing in done.stderr, done.stderr
    assert "token_bytes(32)" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "webhook_secret").exists() and not (tmp_path / "encryption_key").exists()
