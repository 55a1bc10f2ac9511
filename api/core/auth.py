"""Who may call what (client key, admin token, codec caller), and what routes get injected: settings,
the Temporal gateway."""

from __future__ import annotations

import base64
import ipaddress
import secrets
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.core.errors import ApiError, validation_error
from api.core.temporal import TemporalGateway
from common.settings import Settings
from common.tenants import TENANT_PATTERN, Tenant

_bearer = HTTPBearer(auto_error=False, description="a client key from HERALD_API_KEYS")


def settings_of(request: Request) -> Settings:
    """The app's settings, where a function that is not a dependency needs them."""
    return request.app.state.settings


# The dependencies are coroutines, though none of them waits: FastAPI runs a plain function dependency
# in a worker thread, a hop per dependency per request (some 10% of the API's CPU; tests/api/test_layout.py).
async def get_settings(request: Request) -> Settings:
    return settings_of(request)


async def get_gateway(request: Request) -> TemporalGateway:
    return request.app.state.gateway


def client_tenant(settings: Settings, given: str) -> str | None:
    """The tenant of a client key, or None for a key that is not one."""
    found = None
    # compare_digest against every key (no early exit): no timing hint about which prefix matched.
    for key, tenant in settings.client_keys().items():
        if secrets.compare_digest(given.encode(), key.encode()) and given:
            found = tenant
    return found


def _is_client_key(settings: Settings, given: str) -> bool:
    return client_tenant(settings, given) is not None


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "a valid client key is required: Authorization: Bearer KEY",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def require_client_key(
    settings: Annotated[Settings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    given = credentials.credentials if credentials else ""
    if not _is_client_key(settings, given):
        raise _unauthorized()
    return given


async def caller_tenant(
    settings: Annotated[Settings, Depends(get_settings)], key: Annotated[str, Depends(require_client_key)]
) -> Tenant:
    """The caller's tenant: everything a client route reads or creates is scoped to it (docs/tenants.md)."""
    name = client_tenant(settings, key)
    assert name is not None, "require_client_key let only client keys through"
    return Tenant(name=name, default=name == settings.tenant_names()[0])


def _is_admin_token(settings: Settings, given: str) -> bool:
    return bool(given and settings.admin_token) and secrets.compare_digest(
        given.encode(), settings.admin_token.encode()
    )


def _admin_credential(authorization: str) -> str:
    """The admin token from `Bearer TOKEN`, or from HTTP Basic (any user, the token as password)."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return ""
    return ""


# Basic first: a browser takes the first challenge of the header and knows no Bearer, so with
# Bearer first it would not ask for the token when it opens the dashboard.
ADMIN_CHALLENGE = 'Basic realm="Herald admin", Bearer realm="Herald admin"'
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def _cross_site(request: Request, authorization: str) -> bool:
    """An admin action by HTTP Basic from another site's page (a forged form POST, say).

    A browser re-sends the Basic credentials it holds for the origin with every request to it,
    whichever page made the request; it also says in Sec-Fetch-Site where the request came from.
    Bearer tokens are never sent on their own, and clients that are not browsers send no
    Sec-Fetch-Site, so neither is affected.
    """
    return (
        request.method not in _SAFE_METHODS
        and authorization.partition(" ")[0].lower() == "basic"
        and request.headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site")
    )


def _admin_refusal(settings: Settings, request: Request, *, page_allowed: bool = False) -> ApiError | None:
    """`page_allowed`: the request comes from a page whose origin may call (the codec's CORS origins),
    so HTTP Basic from it is no forgery."""
    authorization = request.headers.get("authorization", "")
    given = _admin_credential(authorization)
    if _is_admin_token(settings, given):
        if not page_allowed and _cross_site(request, authorization):
            return ApiError(
                403,
                "forbidden",
                "an admin action from another site's page is refused; "
                "use the dashboard, or send the token as a Bearer token",
            )
        return None
    if _is_client_key(settings, given):
        return ApiError(403, "forbidden", "a client key cannot use the admin routes; use the admin token")
    return ApiError(
        401,
        "unauthorized",
        "the admin token is required: Authorization: Bearer TOKEN",
        headers={"WWW-Authenticate": ADMIN_CHALLENGE},
    )


async def require_admin_token(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    """The admin token, as a Bearer token or as the password of HTTP Basic auth; a client key gets 403."""
    refusal = _admin_refusal(settings, request)
    if refusal:
        raise refusal


FOREIGN_ORIGIN = "the codec answers pages of the Temporal Web UI's origin only (HERALD_CODEC_ORIGINS)"


def _codec_refusal(settings: Settings, request: Request) -> ApiError | None:
    """The codec (api/codec/routes.py) answers the admin token; a browser page only from an allowed
    origin (the Temporal Web UI's); in dev mode that origin also without a token, as the local Web UI
    sends none."""
    origin = request.headers.get("origin")
    if origin is None:
        return _admin_refusal(settings, request)
    if origin not in settings.codec_allowed_origins():
        return ApiError(403, "forbidden", FOREIGN_ORIGIN)
    if settings.dev_mode and "authorization" not in request.headers and _from_this_machine(request):
        # The local Web UI's browser, on this machine (an Origin header alone anyone can send).
        return None
    return _admin_refusal(settings, request, page_allowed=True)


def _from_this_machine(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:  # not an address (a test transport's made-up host)
        return False


async def require_codec_caller(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    """The admin token (a client key gets 403), from no page or from an allowed origin's (CORS)."""
    refusal = _codec_refusal(settings, request)
    if refusal:
        raise refusal


def unauthorized_caller(request: Request) -> ApiError | None:
    """The 401/403 owed to a caller of a client or admin route without the right credential, or None.

    FastAPI parses and validates a body before it runs dependencies, so a bad body would
    otherwise be answered (400) before the missing key (401).
    """
    route = request.scope.get("route")
    guards = {getattr(d, "dependency", None) for d in getattr(route, "dependencies", [])}
    authorization = request.headers.get("authorization", "")
    if require_admin_token in guards:
        return _admin_refusal(settings_of(request), request)
    if require_codec_caller in guards:
        return _codec_refusal(settings_of(request), request)
    if require_client_key not in guards:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and _is_client_key(settings_of(request), token.strip()):
        return None
    return _unauthorized()


SettingsDep = Annotated[Settings, Depends(get_settings)]
# The caller's tenant, on every client route that reads or creates something of a tenant's.
CallerTenant = Annotated[Tenant, Depends(caller_tenant)]


async def tenant_filter(
    settings: Annotated[Settings, Depends(get_settings)],
    tenant: Annotated[
        str | None,
        Query(
            pattern=TENANT_PATTERN,
            description="only this tenant's, one of HERALD_API_KEYS's (the default tenant's include what was "
            "made before tenants)",
        ),
    ] = None,
) -> str | None:
    """The admin routes' `?tenant=`."""
    return known_tenant(settings, tenant)


def known_tenant(settings: Settings, tenant: str | None) -> str | None:
    """`tenant` if the deployment has it. One it does not have is a 400 rather than an empty answer: a
    typo says so, and visibility (rate-limited per namespace) is not asked for nothing."""
    if tenant is not None and tenant not in settings.tenant_names():
        raise validation_error("tenant", f"not a tenant of HERALD_API_KEYS ({', '.join(settings.tenant_names())})")
    return tenant


TenantFilter = Annotated[str | None, Depends(tenant_filter)]
Gateway = Annotated[TemporalGateway, Depends(get_gateway)]
