"""Who may call what: every route of the app x {no key, client key, admin token, wrong token}.

The routes are read from the app itself (not from a list kept here), so a route added later is
covered the day it is added: it must be one of the open routes or carry the client-key or
admin-token guard, and then answers this matrix like its kind.

- client routes: a client key only; no key, a wrong token or the admin token → 401;
- `/admin`, `/admin/*` and the codec (`/codec/*`): the admin token only; no or a wrong token → 401,
  a client key → 403;
- open routes (`/healthz`, `/readyz`, `/metrics`, `/docs`, `/openapi.json`): anyone.

The credential is checked before the body: every route that takes one is also called with a
body that is refused (unknown field) and with one that is not JSON at all. Those bodies also keep
the authorised calls from starting anything (a 400, not a job), and the ids in the paths are
unknown (a 404, not a change to a real job or schedule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute

from api.core.auth import ADMIN_CHALLENGE, require_admin_token, require_client_key, require_codec_caller
from api.main import create_app
from common.settings import Settings
from tests.api.helpers import ADMIN_TOKEN, API_KEY, api_client, assert_error
from tests.support.temporal import ENCRYPTION_KEY

try:  # FastAPI >= 0.13x includes routers lazily: app.routes holds the included routers, not their routes.
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI: app.routes is already flat
    iter_route_contexts = None

WRONG_TOKEN = "wrong-token-0f3c"
# The open routes the contract names, and FastAPI's own pages beside /docs (ReDoc, the OAuth2
# redirect of the interactive docs): documentation, open like /docs.
OPEN = {"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"}
CREDENTIALS = {
    "none": None,
    "client": f"Bearer {API_KEY}",
    "admin": f"Bearer {ADMIN_TOKEN}",
    "wrong": f"Bearer {WRONG_TOKEN}",
}
# Refused by every body model: an unknown field (every model forbids them) of a wrong type.
REFUSED_BODY = {"authMatrixUnknownField": ["x"]}
# Not JSON: cut short, and not even UTF-8 (FastAPI reports the two differently).
NOT_JSON = [b'{"to": ', b'{"to": "\xff"}']


@dataclass(frozen=True)
class RouteCase:
    method: str
    path: str
    kind: str  # "open" | "client" | "admin"
    takes_body: bool

    @property
    def url(self) -> str:
        # Unknown ids: a 404 when authorised, never a real job or schedule touched.
        return re.sub(r"\{[^}]+\}", "email-0000000000000000beef", self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _route_contexts(app) -> list[Any]:
    if iter_route_contexts is None:
        return [(route.path, route.methods, route) for route in app.routes]
    return [(ctx.path, ctx.methods, ctx.original_route) for ctx in iter_route_contexts(app.routes)]


def _kind(path: str, route: Any) -> str:
    guards = {getattr(d, "dependency", None) for d in getattr(route, "dependencies", [])}
    if require_admin_token in guards or require_codec_caller in guards:
        return "admin"
    if require_client_key in guards:
        return "client"
    return "open"


def route_cases(app) -> list[RouteCase]:
    cases = []
    for path, methods, route in _route_contexts(app):
        for method in sorted(methods or ()):
            takes_body = isinstance(route, APIRoute) and route.body_field is not None
            cases.append(RouteCase(method, path, _kind(path, route), takes_body))
    return cases


# The app's routes, read at collection time from an app built like the test one.
ROUTES = route_cases(create_app(Settings(api_keys=[API_KEY], admin_token=ADMIN_TOKEN, encryption_key=ENCRYPTION_KEY)))
SECRETS = [API_KEY, ADMIN_TOKEN, WRONG_TOKEN]


def test_the_matrix_covers_every_route_and_each_has_its_guard(app):
    assert route_cases(app) == ROUTES
    assert {str(r) for r in ROUTES} >= {
        "POST /jobs/email",
        "GET /admin",
        "GET /admin/dlq",
        "GET /healthz",
        "GET /openapi.json",
        "POST /schedules",
        "POST /codec/encode",
        "POST /codec/decode",
    }
    for route in ROUTES:
        # A route is open only by being named so; every other one carries the guard of its prefix.
        expected = (
            "open" if route.path in OPEN else "admin" if re.match(r"^/(admin|codec)(/|$)", route.path) else "client"
        )
        assert route.kind == expected, f"{route}: guarded as {route.kind}, expected {expected}"


def _headers(credential: str | None) -> dict[str, str]:
    return {} if credential is None else {"Authorization": credential}


def _allowed(route: RouteCase, who: str) -> bool:
    return route.kind == "open" or who == route.kind


def _check_refusal(response, route: RouteCase, who: str) -> None:
    if route.kind == "admin" and who == "client":
        assert_error(response, 403, "forbidden")
        return
    body = assert_error(response, 401, "unauthorized")
    assert body["details"] == []
    challenge = ADMIN_CHALLENGE if route.kind == "admin" else "Bearer"
    assert response.headers["www-authenticate"] == challenge, str(route)


def _check_allowed(response, route: RouteCase) -> None:
    assert response.status_code not in (401, 403), (str(route), response.status_code, response.text)
    assert response.status_code < 500, (str(route), response.status_code, response.text)
    if response.status_code >= 400 and route.method != "HEAD":
        assert_error(response, response.status_code, response.json()["error"])


def _no_secret_in(response) -> None:
    for secret in SECRETS:
        assert secret not in response.text, f"{secret!r} appears in the answer"
        for name, value in response.headers.items():
            assert secret not in value, f"{secret!r} appears in the {name} header"


@pytest.mark.parametrize("who", list(CREDENTIALS))
@pytest.mark.parametrize("route", ROUTES, ids=str)
async def test_each_route_takes_only_its_credential(app, dev_env, route, who):
    async with api_client(app) as client:
        headers = _headers(CREDENTIALS[who])
        answers = []
        if route.takes_body:
            # A body that is refused, and one that is not JSON: the credential is checked first.
            answers.append(await client.request(route.method, route.url, json=REFUSED_BODY, headers=headers))
            for raw in NOT_JSON:
                answers.append(
                    await client.request(
                        route.method, route.url, content=raw, headers=headers | {"Content-Type": "application/json"}
                    )
                )
        else:
            answers.append(await client.request(route.method, route.url, headers=headers))
        for response in answers:
            _no_secret_in(response)
            if _allowed(route, who):
                _check_allowed(response, route)
            else:
                _check_refusal(response, route, who)
        if route.takes_body and _allowed(route, who):
            refused, *not_json = answers
            assert_error(refused, 400, "validation_error")
            for response in not_json:
                assert_error(response, 400, "invalid_json")


async def test_open_routes_answer_without_a_key(app, dev_env):
    async with api_client(app) as client:
        for route in ROUTES:
            if route.kind == "open" and route.method == "GET":
                response = await client.get(route.url)
                assert response.status_code == 200, (str(route), response.text)


async def test_several_client_keys_work_at_once(make_app, dev_env):
    """Rotation: every key of HERALD_API_KEYS is accepted; a retired one is not."""
    rotating = make_app(api_keys=["key-new-7d1e", API_KEY])
    async with api_client(rotating) as client:
        for key in ("key-new-7d1e", API_KEY):
            response = await client.get("/jobs/email-0000000000000000beef", headers={"Authorization": f"Bearer {key}"})
            assert_error(response, 404, "not_found")
        for key in ("key-old-0000", "key-new-7d1", "key-new-7d1ee", f"{API_KEY},key-new-7d1e"):
            response = await client.get("/jobs/email-0000000000000000beef", headers={"Authorization": f"Bearer {key}"})
            assert_error(response, 401, "unauthorized")
            _no_secret_in(response)
    # The same through the environment variable, comma-separated.
    assert Settings(api_keys="key-new-7d1e, test-key").api_keys == ["key-new-7d1e", API_KEY]


async def test_the_admin_token_is_also_the_basic_password_of_the_admin_routes_only(app, dev_env):
    import base64

    basic = "Basic " + base64.b64encode(f"operator:{ADMIN_TOKEN}".encode()).decode()
    async with api_client(app) as client:
        assert (await client.get("/admin/stats", headers={"Authorization": basic})).status_code == 200
        # On a client route, HTTP Basic with the admin token (or a client key) is still a 401.
        response = await client.get("/jobs/email-0000000000000000beef", headers={"Authorization": basic})
        assert_error(response, 401, "unauthorized")
        _no_secret_in(response)
