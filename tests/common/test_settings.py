from __future__ import annotations

import pytest

from api.main import MissingApiKeys, create_app
from common.settings import DEV_ADMIN_TOKEN, DEV_API_KEY, Settings, load_or_create_secret


def test_lists_are_comma_separated_in_the_environment(monkeypatch):
    monkeypatch.setenv("HERALD_API_KEYS", "k1, k2,,")
    monkeypatch.setenv("HERALD_WEBHOOK_ALLOW_HOSTS", "127.0.0.1/8,localhost")
    settings = Settings()
    assert settings.api_keys == ["k1", "k2"]
    assert settings.webhook_allow_hosts == ["127.0.0.1/8", "localhost"]


def test_dev_mode_fills_in_the_documented_credentials_only():
    assert Settings(dev_mode=True).api_keys == [DEV_API_KEY]
    assert Settings(dev_mode=True).admin_token == DEV_ADMIN_TOKEN
    assert Settings(dev_mode=True, api_keys=["mine"]).api_keys == ["mine"]
    assert Settings(dev_mode=False).api_keys == []


def test_the_api_refuses_to_start_without_keys_outside_dev_mode():
    with pytest.raises(MissingApiKeys, match="HERALD_API_KEYS"):
        create_app(Settings(dev_mode=False))


def test_webhook_secrets_rotate_and_in_dev_mode_default_to_one_generated_once(tmp_path):
    assert Settings(webhook_secret="whsec_a whsec_b").webhook_secrets() == ["whsec_a", "whsec_b"]
    generated = Settings(data_dir=tmp_path, dev_mode=True).webhook_secrets()
    assert generated[0].startswith("whsec_")
    assert Settings(data_dir=tmp_path, dev_mode=True).webhook_secrets() == generated
    assert load_or_create_secret(tmp_path / "webhook_secret") == generated[0]
    assert oct((tmp_path / "webhook_secret").stat().st_mode & 0o777) == "0o600"


def test_an_empty_variable_means_unset(monkeypatch):
    monkeypatch.setenv("HERALD_SMS_RATE_LIMIT", "")
    monkeypatch.setenv("HERALD_EMAIL_CONCURRENCY", "")
    monkeypatch.setenv("HERALD_WEBHOOK_SECRET", "")
    settings = Settings()
    assert settings.sms_rate_limit is None and settings.email_concurrency == 50
    assert settings.webhook_secret is None
