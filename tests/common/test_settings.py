from __future__ import annotations

import re

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


def test_tenant_weights_and_rate_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("HERALD_TENANT_WEIGHTS", "acme=3, globex=0.5,")
    monkeypatch.setenv("HERALD_TENANT_RATE_LIMIT", "20")
    settings = Settings()
    assert settings.tenant_weights == {"acme": 3.0, "globex": 0.5}
    assert settings.tenant_weight("acme") == 3.0 and settings.tenant_weight("initech") == 1.0
    assert settings.tenant_rate_limit == 20.0
    monkeypatch.setenv("HERALD_TENANT_WEIGHTS", "")
    monkeypatch.setenv("HERALD_TENANT_RATE_LIMIT", "")
    assert Settings().tenant_weights == {} and Settings().tenant_rate_limit is None


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ("acme:3", "'acme:3' is not TENANT=WEIGHT"),
        ("Acme=3", "'Acme=3' is not TENANT=WEIGHT"),
        ("acme=three", "the weight of 'acme' is 'three'"),
        ("acme=0", "the weight of 'acme' is '0'; a weight is a number from 0.001 to 1000"),
        ("acme=5000", "from 0.001 to 1000"),
        ("acme=nan", "the weight of 'acme' is 'nan'"),
        ("acme=1,acme=2", "'acme' is given two weights"),
    ],
)
def test_a_malformed_tenant_weight_fails_validation_with_a_clear_message(monkeypatch, weights, message):
    monkeypatch.setenv("HERALD_TENANT_WEIGHTS", weights)
    with pytest.raises(ValueError, match="HERALD_TENANT_WEIGHTS: .*" + re.escape(message)):
        Settings()


def test_a_tenant_rate_limit_must_be_positive(monkeypatch):
    monkeypatch.setenv("HERALD_TENANT_RATE_LIMIT", "0")
    with pytest.raises(ValueError, match="tenant_rate_limit"):
        Settings()
