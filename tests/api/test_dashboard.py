"""GET /admin, the operator's dashboard, in a real headless Chromium (Debian's, driven by Playwright).

The API is served over real HTTP (uvicorn on its own thread) against the session's dev server and
workers; the browser opens the page with HTTP Basic credentials, as an operator would, and the
page's own script reads and acts through the admin JSON routes. Screenshots are kept in
.data/test-artifacts/. `make test` installs Debian's chromium; no browser is ever downloaded.
"""

from __future__ import annotations

import re
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from api.main import create_app
from tests.api.helpers import (
    ADMIN,
    ADMIN_TOKEN,
    API_KEY,
    AUTH,
    ThreadedServer,
    assert_error,
    chromium,
    failed_webhook,
    listed,
    new_number,
    poll,
    until_final,
)
from tests.support.http_receiver import Answer, HttpReceiver

pytestmark = pytest.mark.usefixtures("workers")

ARTIFACTS = Path(__file__).resolve().parents[2] / ".data" / "test-artifacts"
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def served(settings):
    """The API over real HTTP, with its own app (and so its own Temporal client on the server's loop)."""
    with ThreadedServer(
        create_app(settings.model_copy(update={"temporal_ui_url": "http://ui.example:8233"}))
    ) as server:
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def browser(tmp_path):
    # Basic credentials as an operator would type them into the browser's prompt.
    async with chromium(
        tmp_path / "profile",
        http_credentials={"username": "operator", "password": ADMIN_TOKEN},
        viewport={"width": 1360, "height": 1000},
    ) as context:
        yield context


def keep(path: Path, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kept = ARTIFACTS / name
    shutil.move(str(path), kept)
    print(f"\nscreenshot: {kept}")
    return kept


async def test_the_dashboard_shows_counts_and_redrives_a_dead_letter(api, served, browser, tmp_path, smtp_sink):
    with HttpReceiver([Answer(404, {"error": "no such hook"}), Answer(200, {"ok": True})]) as receiver:
        done = (await api.post("/jobs/email", json={"to": "ada@example.com", "subject": "s", "body": "b"})).json()
        assert (await until_final(api, done["jobId"]))["status"] == "completed"
        dead = await failed_webhook(api, receiver.url)
        await listed(api, dead)
        created = await api.post(
            "/schedules",
            json={"cron": "0 9 1 1 *", "timezone": "Europe/Paris", "job": {"type": "cleanup", "task": "delete_temp"}},
        )
        assert created.status_code == 201, created.text
        schedule_id = created.json()["scheduleId"]

        page = await browser.new_page()
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)

        response = await page.goto(f"{served}/admin")
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]

        # The counts, read by the page's script with the credentials the page was opened with.
        failed = page.locator("#count-webhook-failed")
        await failed.wait_for(timeout=WAIT_MS)
        await page.wait_for_function(
            "() => parseInt((document.querySelector('#count-webhook-failed')||{}).textContent||'0') >= 1",
            timeout=WAIT_MS,
        )
        assert int(await page.locator("#count-email-completed").inner_text()) >= 1
        assert int((await page.locator("#sum-dlq").inner_text()).replace(",", "")) >= 1

        # The dead letter's row: its error, a link to its run in the Web UI, and the buttons.
        row = page.locator(f'#dlq tr[data-job-id="{dead}"]')
        await row.wait_for(timeout=WAIT_MS)
        assert "HTTP 404" in await row.inner_text()
        assert (
            await row.locator("a").first.get_attribute("href")
            == f"http://ui.example:8233/namespaces/default/workflows/{dead}"
        )
        # The recent jobs link to their runs too.
        recent = page.locator(f'#recent tr[data-job-id="{done["jobId"]}"] a')
        await recent.wait_for(timeout=WAIT_MS)
        assert re.fullmatch(
            rf"http://ui\.example:8233/namespaces/default/workflows/{done['jobId']}/[\w-]+/history",
            await recent.get_attribute("href"),
        )
        # Schedules, each linking to its page in the Web UI.
        schedule = page.locator(f'#schedules tr[data-schedule-id="{schedule_id}"] a')
        await schedule.wait_for(timeout=WAIT_MS)
        assert (
            await schedule.get_attribute("href") == f"http://ui.example:8233/namespaces/default/schedules/{schedule_id}"
        )

        # Why on the dead letter: its error as its status route carries it; no preference applied to it.
        await row.get_by_role("button", name=f"Why {dead}").click()
        detail = page.locator(f'#dlq tr[data-decisions-for="{dead}"]')
        await detail.locator(".job-error").wait_for(timeout=WAIT_MS)
        assert (
            await detail.locator(".job-error code").inner_text()
            == (await api.get(f"/jobs/{dead}/status")).json()["error"]
        )
        assert "No preference applied" in await detail.inner_text()

        shot = tmp_path / "dashboard.png"
        await page.screenshot(path=str(shot), full_page=True)
        keep(shot, "dashboard.png")

        # Redrive from the page: the row leaves the table, and the job runs again and completes.
        await row.get_by_role("button", name=f"Redrive {dead}").click()
        await row.wait_for(state="detached", timeout=WAIT_MS)
        status = await until_final(api, dead)
        assert status["status"] == "completed", status
        assert len(receiver.received) == 2
        await listed(api, dead, present=False)
        # After a few refreshes it is still gone (visibility caught up), and the page had no errors.
        await page.evaluate("() => window.heraldDashboard.refresh()")
        assert await page.locator(f'#dlq tr[data-job-id="{dead}"]').count() == 0

        narrow = tmp_path / "dashboard-narrow.png"
        await page.set_viewport_size({"width": 420, "height": 900})
        await page.screenshot(path=str(narrow), full_page=True)
        keep(narrow, "dashboard-narrow.png")

    assert (await api.delete(f"/schedules/{schedule_id}")).status_code in (200, 204)
    assert not problems, problems
    # Offline: the page asked nothing of any other origin.
    assert {urlsplit(url).netloc for url in requests} == {urlsplit(served).netloc}, requests


async def test_why_on_a_dead_letter_shows_its_decisions_and_its_error(api, served, browser, sms_gateway):
    """The dead-letter table's Why opens what a recent job's Why does (one function, GET /admin/jobs/{id}):
    here an SMS deferred by its user's quiet hours, released, then refused by the gateway for good."""
    phone = new_number()
    sms_gateway.script(phone, [Answer(400, {"error": "bad number"})])
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    quiet = {"start": start.strftime("%H:%M"), "end": (start + timedelta(hours=9)).strftime("%H:%M")}
    user_id = f"u-{uuid.uuid4().hex[:12]}"
    assert (await api.put(f"/users/{user_id}", json={"phone": phone, "quietHours": quiet})).status_code == 200
    job_id = (await api.post("/jobs/sms", json={"phone": phone, "message": "m", "userId": user_id})).json()["jobId"]
    await poll(api, f"/jobs/{job_id}/status", lambda b: b["status"] == "delayed")
    assert (await api.post(f"/jobs/{job_id}/release")).status_code == 202
    failed = await until_final(api, job_id)
    assert failed["status"] == "failed" and "HTTP 400" in failed["error"], failed
    assert [(d["rule"], d["outcome"]) for d in failed["decisions"]] == [
        ("quiet_hours", "deferred"),
        ("release", "released"),
    ]
    await listed(api, job_id)

    page = await browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    await page.goto(f"{served}/admin")
    row = page.locator(f'#dlq tr[data-job-id="{job_id}"]')
    await row.wait_for(timeout=WAIT_MS)
    why = row.get_by_role("button", name=f"Why {job_id}")
    await why.click()
    detail = page.locator(f'#dlq tr[data-decisions-for="{job_id}"]')
    await detail.locator("li").first.wait_for(timeout=WAIT_MS)
    assert await _decisions(detail.locator("li")) == [
        (d["rule"], d["outcome"], d["at"], d.get("until")) for d in failed["decisions"]
    ]
    assert await detail.locator(".job-error .pill").inner_text() == "failed"
    assert await detail.locator(".job-error code").inner_text() == failed["error"]
    assert await why.get_attribute("aria-expanded") == "true" and await why.inner_text() == "Hide"
    # Opened in the dead-letter table only; Hide closes it.
    assert await page.locator(f'#recent tr[data-decisions-for="{job_id}"]').count() == 0
    await why.click()
    await detail.wait_for(state="detached", timeout=WAIT_MS)
    assert await why.inner_text() == "Why"
    assert not problems, problems


async def test_discard_and_redrive_all_from_the_page(api, served, browser):
    # Two dead letters; the second one's redrive is answered 200.
    with HttpReceiver([Answer(410), Answer(410), Answer(200)]) as receiver:
        first = await failed_webhook(api, receiver.url)
        second = await failed_webhook(api, receiver.url)
        await listed(api, second)
        page = await browser.new_page()
        dialogs: list[str] = []

        async def confirm(dialog) -> None:  # the confirm() before a discard and before a redrive-all
            dialogs.append(dialog.message)
            await dialog.accept()

        page.on("dialog", confirm)
        await page.goto(f"{served}/admin")
        row = page.locator(f'#dlq tr[data-job-id="{first}"]')
        await row.wait_for(timeout=WAIT_MS)
        await row.get_by_role("button", name=f"Discard {first}").click()
        await row.wait_for(state="detached", timeout=WAIT_MS)
        await listed(api, first, present=False)
        assert (await api.get(f"/jobs/{first}/status")).json()["status"] == "failed"

        await page.locator(f'#dlq tr[data-job-id="{second}"]').wait_for(timeout=WAIT_MS)
        await page.get_by_role("button", name="Redrive all").click()
        await page.locator(f'#dlq tr[data-job-id="{second}"]').wait_for(state="detached", timeout=WAIT_MS)
        assert (await until_final(api, second))["status"] == "completed"
    await listed(api, second, present=False)
    assert len(dialogs) == 2 and first in dialogs[0] and "Redrive all" in dialogs[1], dialogs


async def test_a_browser_without_credentials_is_asked_for_them(served, browser):
    import httpx

    async with httpx.AsyncClient(base_url=served) as client:
        refused = await client.get("/admin")
        assert_error(refused, 401, "unauthorized")
        # The browser's prompt comes from the first challenge, which must be Basic.
        assert refused.headers["www-authenticate"].startswith('Basic realm="Herald admin"')
        assert_error(await client.get("/admin", headers=AUTH), 403, "forbidden")
        assert_error(await client.get("/admin", auth=("operator", API_KEY)), 403, "forbidden")
        page = await client.get("/admin", headers=ADMIN)
        assert page.status_code == 200 and "<title>Herald" in page.text


async def test_another_sites_page_cannot_act_with_the_browsers_basic_credentials(served):
    import httpx

    basic = ("operator", ADMIN_TOKEN)
    async with httpx.AsyncClient(base_url=served) as client:
        # A forged form POST from elsewhere carries the browser's Basic credentials and says where it came from.
        forged = await client.post("/admin/dlq/retry", auth=basic, headers={"Sec-Fetch-Site": "cross-site"})
        assert_error(forged, 403, "forbidden")
        assert_error(
            await client.delete("/admin/dlq/x", auth=basic, headers={"Sec-Fetch-Site": "same-site"}), 403, "forbidden"
        )
        # Reading is harmless; the dashboard's own requests are same-origin; a Bearer token is never sent by itself.
        assert (
            await client.get("/admin/stats", auth=basic, headers={"Sec-Fetch-Site": "cross-site"})
        ).status_code == 200
        assert_error(
            await client.delete("/admin/dlq/x", auth=basic, headers={"Sec-Fetch-Site": "same-origin"}), 404, "not_found"
        )
        assert_error(
            await client.delete("/admin/dlq/x", headers=ADMIN | {"Sec-Fetch-Site": "cross-site"}), 404, "not_found"
        )


async def test_the_dashboard_shows_each_jobs_tenant_and_filters_by_tenant(settings, browser):
    """Two tenants: every table shows a job's tenant, and the tenant filter narrows the page to one."""
    import httpx

    from common.tenants import bare_key_tenant

    two = settings.model_copy(update={"api_keys": [API_KEY, "globex=key-globex"]})
    with ThreadedServer(create_app(two)) as server:
        served = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=served, timeout=30) as client:
            jobs = {}
            for tenant, key in ((bare_key_tenant(API_KEY), API_KEY), ("globex", "key-globex")):
                posted = await client.post(
                    "/jobs/email",
                    json={"to": "ada@example.com", "subject": "tenant column", "body": "b"},
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert posted.status_code == 202, posted.text
                jobs[tenant] = posted.json()["jobId"]
        page = await browser.new_page()
        await page.goto(f"{served}/admin")
        options = await page.locator("#tenant-filter option").all_inner_texts()
        assert options == ["all tenants", bare_key_tenant(API_KEY), "globex"]
        for tenant, job_id in jobs.items():
            row = page.locator(f'#recent tr[data-job-id="{job_id}"]')
            await row.wait_for(timeout=WAIT_MS)
            assert await row.locator("td.tenant").inner_text() == tenant
        await page.select_option("#tenant-filter", "globex")
        await page.locator(f'#recent tr[data-job-id="{jobs[bare_key_tenant(API_KEY)]}"]').wait_for(
            state="detached", timeout=WAIT_MS
        )
        assert await page.locator(f'#recent tr[data-job-id="{jobs["globex"]}"] td.tenant').inner_text() == "globex"
        assert set(await page.locator("#recent td.tenant").all_inner_texts()) == {"globex"}


async def test_the_dashboard_counts_jobs_held_by_preferences_and_shows_why(settings, browser, smtp_sink, tmp_path):
    """A tenant of its own, so its counts are exact: one job deferred by quiet hours and one in a digest
    show in the tenant's counts (and leave them when released and cancelled); a job's decisions open
    from its row, as its status route carries them, and a suppressed job says why."""
    import httpx

    tenant = f"prefs-{uuid.uuid4().hex[:8]}"
    key = f"key-{tenant}"
    app = create_app(settings.model_copy(update={"api_keys": [API_KEY, f"{tenant}={key}"]}))
    with ThreadedServer(app) as server:
        served = f"http://127.0.0.1:{server.port}"
        async with (
            httpx.AsyncClient(base_url=served, timeout=30, headers={"Authorization": f"Bearer {key}"}) as api,
            httpx.AsyncClient(base_url=served, timeout=30, headers=ADMIN) as admin,
        ):
            start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
            quiet = {"start": start.strftime("%H:%M"), "end": (start + timedelta(hours=9)).strftime("%H:%M")}
            user = {"email": "ada@example.com", "quietHours": quiet, "topics": {"marketing": False}}
            assert (await api.put("/users/night-owl", json=user)).status_code == 200
            digesting = {"email": "ada@example.com", "digest": {"topics": ["orders"], "every": 3600}}
            assert (await api.put("/users/collector", json=digesting)).status_code == 200
            mail = {"to": "ada@example.com", "subject": "s", "body": "b", "topic": "orders"}

            deferred = (await api.post("/notify/email", json=mail | {"userId": "night-owl"})).json()["notificationId"]
            waiting = await poll(api, f"/jobs/{deferred}/status", lambda b: b["status"] == "delayed")
            [decision] = waiting["decisions"]
            assert (decision["rule"], decision["outcome"]) == ("quiet_hours", "deferred")
            digested = (await api.post("/jobs/email", json=mail | {"userId": "collector"})).json()["jobId"]
            in_digest = await poll(
                api, f"/jobs/{digested}/status", lambda b: b["status"] == "delayed" and "digestId" in b
            )
            muted = mail | {"userId": "night-owl", "topic": "marketing"}
            suppressed = (await api.post("/notify/email", json=muted)).json()["notificationId"]
            assert (await until_final(api, suppressed))["suppressedReason"] == "topic_opt_out"
            # The same counts through the JSON route the page reads (visibility trails a change by a moment).
            stats = await poll(
                admin, f"/admin/stats?tenant={tenant}", lambda b: (b["deferred"], b["digested"]) == (1, 1)
            )
            assert stats["counts"]["email"]["delayed"] == 2, stats

            page = await browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(f"{served}/admin")
            await page.select_option("#tenant-filter", tenant)
            await _shows(page, "#sum-deferred", "1")
            await _shows(page, "#sum-digested", "1")

            # A deferred job's decisions: when, which rule, what came of it, until when.
            row = page.locator(f'#recent tr[data-job-id="{deferred}"]')
            await row.wait_for(timeout=WAIT_MS)
            await row.get_by_role("button", name=f"Why {deferred}").click()
            shown = page.locator(f'#recent tr[data-decisions-for="{deferred}"] li')
            await shown.first.wait_for(timeout=WAIT_MS)
            assert await _decisions(shown) == [("quiet_hours", "deferred", decision["at"], decision["until"])]
            assert "until" in await shown.inner_text()
            # A suppressed job (finished: its decisions are in its result, not in the list's memo) says why.
            await page.get_by_role("button", name=f"Why {suppressed}").click()
            detail = page.locator(f'#recent tr[data-decisions-for="{suppressed}"]')
            await detail.locator("li").first.wait_for(timeout=WAIT_MS)
            assert await detail.locator(".reason code").inner_text() == "topic_opt_out"
            assert [d[:2] for d in await _decisions(detail.locator("li"))] == [("topic", "suppressed")]
            # A digested one: until its digest goes.
            await page.get_by_role("button", name=f"Why {digested}").click()
            collected = page.locator(f'#recent tr[data-decisions-for="{digested}"] li')
            await collected.first.wait_for(timeout=WAIT_MS)
            assert await _decisions(collected) == [
                ("digest", "digested", d["at"], d["until"]) for d in in_digest["decisions"]
            ]

            # Released, the job goes out: it leaves the deferred count, and its open decisions grow.
            assert (await api.post(f"/jobs/{deferred}/release")).status_code == 202
            sent = await until_final(api, deferred)
            assert sent["status"] == "completed", sent
            assert (await api.post(f"/jobs/{digested}/cancel")).status_code == 202
            await page.evaluate("() => window.heraldDashboard.refresh()")
            await _shows(page, "#sum-deferred", "0")
            await _shows(page, "#sum-digested", "0")
            await page.wait_for_function(
                f"() => document.querySelectorAll('#recent tr[data-decisions-for=\"{deferred}\"] li').length === 3",
                timeout=WAIT_MS,
            )
            assert await _decisions(shown) == [
                (d["rule"], d["outcome"], d["at"], d.get("until")) for d in sent["decisions"]
            ]
            assert [d[:2] for d in await _decisions(shown)] == [
                ("quiet_hours", "deferred"),
                ("release", "released"),
                ("quiet_hours", "sent"),
            ]
            shot = tmp_path / "dashboard-decisions.png"
            await page.screenshot(path=str(shot), full_page=True)
            keep(shot, "dashboard-decisions.png")
    assert not problems, problems


async def _shows(page, selector: str, text: str) -> None:
    await page.wait_for_function(
        "([selector, text]) => (document.querySelector(selector) || {}).textContent === text",
        arg=[selector, text],
        timeout=WAIT_MS,
    )


async def _decisions(items) -> list[tuple[str, str, str, str | None]]:
    """Each shown decision: its rule and outcome as written, and the moments its <time>s stand for."""
    shown = await items.evaluate_all(
        """items => items.map(li => [
            li.querySelector('.rule').textContent,
            li.querySelector('.pill').textContent,
            li.querySelector('time.at').getAttribute('datetime'),
            (li.querySelector('time.until') || {getAttribute: () => null}).getAttribute('datetime'),
        ])"""
    )
    return [tuple(item) for item in shown]
