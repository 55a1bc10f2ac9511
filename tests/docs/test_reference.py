"""The reference in docs/ cannot go stale: the OpenAPI file, every route, every setting, every link."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args
from urllib.parse import unquote

import pytest

from api.jobs.models import BullMQStatusWord, JobStatusWord, NotificationStatusWord
from api.main import create_app
from api.openapi_export import REGENERATE, openapi_schema, render
from common.settings import Settings
from tests.support.temporal import ENCRYPTION_KEY

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
OPENAPI = DOCS / "openapi.json"
# Read by the `make run` launcher from the environment, not by the Settings class.
LAUNCHER_ONLY = {"HERALD_DEV_SMS_PORT"}


def _app_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of every route in the schema, path parameters written `{id}`."""
    paths = openapi_schema()["paths"]
    return {
        (method.upper(), re.sub(r"\{[^}]+\}", "{id}", path)) for path, methods in paths.items() for method in methods
    }


# ---- docs/openapi.json ---------------------------------------------------------------------
def test_openapi_file_is_the_apps_current_schema():
    assert OPENAPI.exists(), f"docs/openapi.json is missing; generate it with: {REGENERATE}"
    assert OPENAPI.read_text() == render(openapi_schema()), (
        f"docs/openapi.json differs from the app's schema; regenerate it with: {REGENERATE}"
    )


def test_the_schema_does_not_depend_on_the_settings():
    # So the file is the schema of every deployment, whatever its HERALD_* variables.
    other = Settings(
        api_keys=["some-key"],
        max_body_bytes=1234,
        max_subject_chars=10,
        max_sms_chars=10,
        encryption_key=ENCRYPTION_KEY,
        codec_origins=["https://ui.example"],
        temporal_address="temporal.example:7233",
        webhook_allow_hosts=["10.0.0.0/8"],
    )
    assert create_app(other).openapi() == openapi_schema()


# ---- docs/api.md ---------------------------------------------------------------------------
def test_every_route_is_in_the_api_reference():
    text = (DOCS / "api.md").read_text()
    missing = [f"{method} {path}" for method, path in sorted(_app_routes()) if f"`{method} {path}`" not in text]
    assert not missing, f"docs/api.md does not document: {missing}"
    for open_route in ("`GET /docs`", "`GET /openapi.json`"):
        assert open_route in text


def test_the_api_reference_names_no_route_the_app_lacks():
    text = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"^### `(GET|POST|PUT|DELETE|PATCH) (/[^`]*)`", text, flags=re.M))
    assert documented, "no route headings found in docs/api.md"
    assert documented <= _app_routes(), f"docs/api.md has routes the app lacks: {documented - _app_routes()}"


def test_every_status_word_is_in_the_api_reference():
    text = (DOCS / "api.md").read_text()
    for family in (JobStatusWord, BullMQStatusWord, NotificationStatusWord):
        line = " \\| ".join(f"`{word}`" for word in get_args(family))
        assert line in text, f"docs/api.md does not list the status words {line}"


# ---- docs/settings.md ----------------------------------------------------------------------
def _settings_rows() -> dict[str, str]:
    """HERALD_ name → the default cell of its row in docs/settings.md."""
    rows = {}
    for line in (DOCS / "settings.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `HERALD_") and len(cells) >= 3:
            rows[cells[0].strip("`")] = cells[-1]
    return rows


def _env_name(field: str) -> str:
    return f"HERALD_{field.upper()}"


def _shown(value: object) -> str:
    """How docs/settings.md writes a default."""
    if value is None or value == [] or value == {}:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)):
        return f"`{int(value) if float(value).is_integer() else value}`"
    return f"`{value}`"


def test_every_setting_has_a_row_in_the_settings_reference():
    rows = _settings_rows()
    missing = [_env_name(name) for name in Settings.model_fields if _env_name(name) not in rows]
    assert not missing, f"docs/settings.md has no row for: {missing}"


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_each_default_in_the_settings_reference_is_the_real_one(name):
    default = Settings.model_fields[name].get_default(call_default_factory=True)
    cell = _settings_rows().get(_env_name(name), "")
    assert cell.startswith(_shown(default)), (
        f"docs/settings.md gives {_env_name(name)} the default {cell!r}; the code's is {_shown(default)}"
    )


def test_the_settings_reference_names_no_setting_the_code_lacks():
    text = (DOCS / "settings.md").read_text()
    named = set(re.findall(r"HERALD_[A-Z0-9_]*[A-Z0-9]", text))
    known = {_env_name(name) for name in Settings.model_fields} | LAUNCHER_ONLY
    assert named <= known, f"docs/settings.md names unknown settings: {sorted(named - known)}"


# ---- links ---------------------------------------------------------------------------------
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository_and_resolve(page):
    text = page.read_text()
    assert "../shared" not in text and "DESIGN.md" not in text, f"{page.name} points outside the repository"
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # an external web page, e.g. https://www.standardwebhooks.com/
        path, _, anchor = unquote(target).partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.is_relative_to(ROOT), f"{page.name}: {target} points outside the repository"
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{page.name}: {target} names no heading of {resolved.name}"
