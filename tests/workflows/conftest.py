from __future__ import annotations

import pytest

from common.settings import Settings
from devstack.smtp_sink import SmtpSink
from tests.support.temporal import free_port, local_settings


@pytest.fixture
def smtp_sink(tmp_path):
    with SmtpSink(tmp_path / "outbox", port=free_port()) as sink:
        yield sink


@pytest.fixture
def make_settings(tmp_path, smtp_sink):
    def make(**overrides) -> Settings:
        return local_settings(tmp_path, **{"smtp_port": smtp_sink.port, **overrides})

    return make
