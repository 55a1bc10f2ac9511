from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e: starts the whole dev stack (`python -m devstack`, as `make run` does); deselect with -m 'not e2e'",
    )
