"""`make run`'s Web UI shows the encrypted payloads decrypted: the dev server's own UI, started as
devstack starts it (`--ui-codec-endpoint` at the API's /codec), the API in dev mode over real HTTP,
and a real headless Chromium (Debian's, as in test_dashboard.py) opening a job's run. The browser
itself calls the codec (a cross-origin request with its CORS preflight), without any token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import email_validator
import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from devstack.temporal_server import tuned_args
from tests.api.helpers import AUTH, DEV_SERVER, ThreadedServer, address_of, chromium, until_final
from tests.support.temporal import free_port, running_workers

# Its module-scoped Temporal server is started once: under xdist all its tests run on one worker.
pytestmark = pytest.mark.xdist_group("web_ui_codec")

PHONE = "+14155550142"


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {"api": free_port(), "ui": free_port()}


@pytest_asyncio.fixture(scope="module")
async def ui_env(ports) -> AsyncIterator[WorkflowEnvironment]:
    codec = f"http://127.0.0.1:{ports['api']}/codec"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(DEV_SERVER),
        ui=True,
        ui_port=ports["ui"],
        dev_server_extra_args=[*tuned_args(persistent=False), "--ui-codec-endpoint", codec],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="module")
async def dev_api(ui_env, ports, settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API as `make run` runs it (dev mode: the local UI's origin needs no token), over HTTP."""
    dev = settings.model_copy(
        update={"temporal_address": address_of(ui_env), "dev_mode": True, "temporal_ui_port": ports["ui"]}
    )
    before = email_validator.TEST_ENVIRONMENT  # a dev-mode app sets it for the process
    try:
        async with running_workers(ui_env.client, dev):
            with ThreadedServer(create_app(dev), port=ports["api"]):
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['api']}", headers=AUTH) as client:
                    yield client
    finally:
        email_validator.TEST_ENVIRONMENT = before


async def test_the_dev_web_ui_shows_a_run_decrypted(dev_api, ports, tmp_path):
    job_id = (await dev_api.post("/notify/sms", json={"phone": PHONE, "message": "Your code is 424242"})).json()[
        "notificationId"
    ]
    assert (await until_final(dev_api, job_id))["status"] == "completed"
    async with chromium(tmp_path / "profile", viewport={"width": 1360, "height": 1400}) as context:
        page = context.pages[0] if context.pages else await context.new_page()
        answers = []
        page.on("response", lambda r: answers.append((r.request.method, r.status)) if "/codec/" in r.url else None)
        await page.goto(f"http://127.0.0.1:{ports['ui']}/namespaces/default/workflows/{job_id}")
        # The input, decoded: the JSON of the job, its recipient in it.
        await page.get_by_text(f'"recipient": "{PHONE}"').first.wait_for(timeout=20_000)
        text = await page.inner_text("body")
    assert '"kind": "sms"' in text and "binary/encrypted" not in text
    # The browser's own cross-origin decodes (each after its CORS preflight, which Chromium keeps to itself).
    assert answers and set(answers) == {("POST", 200)}, answers
