"""No per-process webhook secret outside dev mode: without HERALD_WEBHOOK_SECRET, `python -m worker`
and `python -m api` refuse to start (before connecting to Temporal) and say how to make one; in
dev mode one is generated once into the data dir and reused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import MissingWebhookSecret, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_outside_dev_mode_a_missing_secret_is_an_error_and_nothing_is_written(tmp_path):
    settings = Settings(data_dir=tmp_path, dev_mode=False)
    with pytest.raises(MissingWebhookSecret, match="HERALD_WEBHOOK_SECRET") as raised:
        settings.webhook_secrets()
    assert "whsec_" in str(raised.value) and "token_bytes(32)" in str(raised.value)
    with pytest.raises(MissingWebhookSecret):
        settings.require_webhook_secret()
    with pytest.raises(MissingWebhookSecret):
        Settings(data_dir=tmp_path, webhook_secret=" , ").webhook_secrets()
    assert not (tmp_path / "webhook_secret").exists()
    Settings(data_dir=tmp_path, webhook_secret="whsec_dGVzdA==").require_webhook_secret()


def test_in_dev_mode_one_secret_is_generated_once_and_reused(tmp_path):
    first = Settings(data_dir=tmp_path, dev_mode=True)
    first.require_webhook_secret()
    [secret] = first.webhook_secrets()
    assert secret.startswith("whsec_")
    assert Settings(data_dir=tmp_path, dev_mode=True).webhook_secrets() == [secret]
    assert (tmp_path / "webhook_secret").read_text().strip() == secret


@pytest.mark.parametrize("module", ["worker", "api"])
def test_the_process_refuses_to_start_without_a_secret_outside_dev_mode(module, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    # Nothing listens on port 9: a process that tried to connect would wait, not exit.
    env |= {"HERALD_DEV_MODE": "false", "HERALD_DATA_DIR": str(tmp_path), "HERALD_API_KEYS": "k",
            "HERALD_TEMPORAL_ADDRESS": "127.0.0.1:9", "HERALD_WORKER_METRICS_PORT": "0"}
    done = subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "refusing to start" in done.stderr and "HERALD_WEBHOOK_SECRET" in done.stderr, done.stderr
    assert "whsec_" in done.stderr
    assert not (tmp_path / "webhook_secret").exists()
