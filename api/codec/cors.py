"""CORS for the codec routes (api/codec/routes.py), for the allowed origins only (HERALD_CODEC_ORIGINS)."""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.core.auth import FOREIGN_ORIGIN
from common.settings import Settings

PREFIX = "/codec"

# What the Web UI sends: Content-Type and X-Namespace, and Authorization when it passes a token.
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"
PREFLIGHT_MAX_AGE = "600"


class CodecCors:
    """CORS for the codec routes, for the allowed origins only: preflights answered here (before any
    credential: a browser sends none with them), and every answer to an allowed page marked readable
    by it, its 401s too. A page of another origin gets no CORS header: the browser keeps the answer
    from it (and api/core/auth.py refuses its request with a 403)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.origins = set(settings.codec_allowed_origins())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX + "/"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            return await self.app(scope, receive, send)
        allowed = origin in self.origins
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            return await self._preflight(send, origin if allowed else None)
        if not allowed:
            return await self.app(scope, receive, send)

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_cors_headers(origin)]
            await send(message)

        await self.app(scope, receive, marked)

    @staticmethod
    async def _preflight(send: Send, origin: str | None) -> None:
        if origin is None:
            body = json.dumps({"error": "forbidden", "message": FOREIGN_ORIGIN, "details": []}).encode()
            headers = [(b"content-type", b"application/json")]
            status = 403
        else:
            body = b""
            headers = [
                *_cors_headers(origin),
                (b"access-control-allow-methods", b"POST"),
                (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                (b"access-control-max-age", PREFLIGHT_MAX_AGE.encode()),
            ]
            status = 204
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    # Credentials: the Web UI can send the browser's HTTP Basic login to the API with its requests
    # (TEMPORAL_CODEC_INCLUDE_CREDENTIALS), which needs the exact origin, never `*`.
    return [
        (b"access-control-allow-origin", origin.encode()),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
    ]
