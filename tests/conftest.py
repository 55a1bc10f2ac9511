from __future__ import annotations

from collections.abc import Callable

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from common.runtime import exit_skipping_teardown
from tests.support.temporal import TEST_SERVER, register_search_attributes, started_again_if_a_port_was_taken
from tests.support.temporal import free_port as _free_port

# The longest tests (whole stacks started and killed, the bench) go first: under xdist, a worker
# that drew one last would still be busy long after the others ran out of tests.
LONGEST_FIRST = (
    "tests/crash/",
    "tests/devstack/test_launcher.py",
    "tests/devstack/test_supervision.py",
    "tests/e2e/",
    "tests/bench/",
    "tests/api/test_batch_chunks.py::test_ten_thousand",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST_FIRST))


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a TCP port on 127.0.0.1 that nothing listens on right now."""
    return _free_port


@pytest_asyncio.fixture
async def time_env():
    """Temporal's time-skipping test server, a fresh one for each test (it starts in about 0.15 s):
    timers and retry backoffs pass instantly. One shared server went wrong late in a long run: it
    keeps every history in memory, and what one test left behind (a task for its stopped worker, a
    timer that locks the clock) held a later test's clock still until a call timed out."""
    env = await started_again_if_a_port_was_taken(
        lambda: WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(TEST_SERVER))
    )
    await register_search_attributes(env)
    yield env
    await env.shutdown()


_exit_status: list[int] = []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    # The Temporal SDK's Rust runtime can crash interpreter teardown (a known SDK issue), turning
    # a green run into exit code 139. Everything is reported by now, so leave with pytest's status.
    if _exit_status:
        exit_skipping_teardown(_exit_status[0])
