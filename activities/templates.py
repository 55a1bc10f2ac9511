"""The typed notifications' emails, rendered from Jinja2 templates in `templates/`.

Each type has three templates: `<type>.subject.j2` (one line), `<type>.txt.j2` (the plain-text
part) and `<type>.html.j2` (the HTML part, autoescaped: a user's name or an order id can never
write markup). A translation lives in `<locale>/` beside them (`de/welcome.html.j2`); the user's
locale picks it where it exists (`de-AT` tries `de-AT/`, then `de/`), else the default (English).
Undefined variables are errors (StrictUndefined), never silently empty text.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "templates"
PARTS = ("subject", "txt", "html")


@dataclass
class RenderedEmail:
    subject: str
    text: str
    html: str
    locale: str | None  # the translation used; None for the default


class TemplateError(ValueError):
    """A template that cannot be rendered with what the notification carries."""


@lru_cache(maxsize=8)
def environment(directory: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        # Only the HTML part is markup; the subject and the plain text are sent as they are.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def locale_candidates(locale: str | None) -> list[str]:
    """`de-AT` → [`de-AT`, `de`]: the most specific translation first."""
    if not locale:
        return []
    parts = locale.replace("_", "-").split("-")
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]


def _pick(env: jinja2.Environment, kind: str, locale: str | None) -> tuple[str, str | None]:
    """The template directory prefix for a type in the user's locale ('' and None: the default)."""
    for candidate in locale_candidates(locale):
        try:
            env.get_template(f"{candidate}/{kind}.txt.j2")
        except jinja2.TemplateNotFound:
            continue
        return f"{candidate}/", candidate
    return "", None


def render(
    kind: str, context: dict[str, Any], locale: str | None = None, directory: Path | None = None
) -> RenderedEmail:
    env = environment(directory or DEFAULT_DIR)
    prefix, used = _pick(env, kind, locale)
    parts = {}
    for part in PARTS:
        try:
            parts[part] = env.get_template(f"{prefix}{kind}.{part}.j2").render(context)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"no template {exc.name} for notification type {kind!r}") from exc
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"template {prefix}{kind}.{part}.j2: {exc.message}") from exc
    subject = " ".join(parts["subject"].split())
    return RenderedEmail(subject=subject, text=parts["txt"], html=parts["html"], locale=used)
