"""`python -m devstack` end to end: it comes up, and Ctrl-C leaves no process behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import ROOT, DevStack, running_devstack, survivors

pytestmark = pytest.mark.skipif(
    not (ROOT / "worker.py").exists() or not (ROOT / "api" / "__main__.py").exists(),
    reason="the launcher starts `python -m worker` and `python -m api`; worker.py or "
    "api/__main__.py does not exist yet",
)


@pytest.fixture
def stack(tmp_path, free_port) -> Iterator[DevStack]:
    """`python -m devstack` on free ports, up and ready."""
    with running_devstack(tmp_path, free_port) as stack:
        assert len(stack.processes) >= 5, stack.log()  # temporal, 2 sinks, worker, api
        yield stack


def test_ctrl_c_stops_everything(stack, tmp_path):
    assert "Ctrl-C to stop" in stack.log()
    assert (tmp_path / "data" / "temporal.db").exists()
    # A database make run made: one partition per task queue (devstack/temporal_server.py).
    assert (tmp_path / "data" / "temporal.db.partitions").read_text() == "1\n"
    assert (tmp_path / "data" / "webhook_secret").read_text().startswith("whsec_")

    assert stack.interrupt() == 0, stack.log()
    assert survivors(stack.processes, timeout=5) == [], stack.log()


def test_children_do_not_outlive_a_killed_launcher(stack):
    stack.launcher.kill()  # no chance to clean up: PR_SET_PDEATHSIG must take them down
    stack.launcher.wait()
    assert survivors(stack.processes, timeout=20) == [], stack.log()
