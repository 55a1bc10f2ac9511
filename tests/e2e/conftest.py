from __future__ import annotations

import pytest

from tests.devstack.conftest import _free_port


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: starts the whole dev stack (`python -m devstack`, as `make run` does); "
                   "deselect with -m 'not e2e'")


@pytest.fixture
def free_port():
    """A function returning a TCP port on 127.0.0.1 that nothing listens on right now."""
    return _free_port
