from __future__ import annotations

import pytest

from common.settings import Settings
from devstack.smtp_sink import SmtpSink
from tests.support.temporal import ENCRYPTION_KEY, WEBHOOK_SECRET, free_port


@pytest.fixture
def smtp_sink(tmp_path):
    with SmtpSink(tmp_path / "outbox", port=free_port()) as sink:
        yield sink


@pytest.fixture
def make_settings(tmp_path, smtp_sink):
    def make(**overrides) -> Settings:
        values = {
            "data_dir": tmp_path,
            "smtp_port": smtp_sink.port,
            "webhook_secret": WEBHOOK_SECRET,
            "encryption_key": ENCRYPTION_KEY,
            "webhook_allow_hosts": ["127.0.0.1/8"],
            "sms_gateway_url": "http://127.0.0.1:9/unused",
            "temp_dir": tmp_path / "tmp",
            "log_dir": tmp_path / "logs",
            "session_dir": tmp_path / "sessions",
        }
        values.update(overrides)
        return Settings(**values)

    return make
