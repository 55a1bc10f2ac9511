"""The `Idempotency-Key` header, for every POST, in one place: an ASGI middleware.

A POST to a client or admin route that carries the header, from a caller whose credential is
right (anything else passes through untouched: the route answers 401/403, 404, 405 itself), is
read whole, then claimed in Temporal under (tenant or admin token, key) (workflows/idempotency.py):

- the first request runs as usual; its answer is stored before it is sent, if it is one to
  replay: a 2xx, or a 4xx other than 401, 403, 408, 425 and 429 (those, and 5xx, free the key so
  a retry can try again);
- the same key with the same request (method, path, query and body; a JSON body compared by
  value, so key order and spacing do not matter) gets the stored answer again, status, headers
  and body, with `Idempotency-Replayed: true`; while the first is still running it waits for it;
- the same key with another request is a 409 `idempotency_conflict`.

A request whose process dies between claim and answer holds the key for
HERALD_IDEMPOTENCY_LEASE_SECONDS; a retry after that runs again (the job may then exist twice:
at-least-once in that window, as everywhere else in Herald). Keys are kept
HERALD_IDEMPOTENCY_KEEP_HOURS from their first use, per tenant (of the client key; docs/tenants.md) or
for the admin token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import uuid
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client, RPCTimeoutOrCancelledError, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from api.core.auth import _admin_credential, _admin_refusal, client_tenant, require_admin_token, require_client_key
from api.core.errors import ApiError, temporal_unavailable, validation_error
from api.core.temporal import BUSY_RETRIES, is_unreachable, one_update_at_a_time, pause_when_busy, too_many_updates
from common.idempotency import Claim, ClaimOutcome, Completion, KeyStart, StoredAnswer, job_seed, key_workflow_id
from common.logs import log_event
from common.models import INTAKE_TASK_QUEUE
from common.settings import Settings
from common.temporal import RPC_TIMEOUT
from workflows.idempotency import IdempotencyKeyWorkflow

log = logging.getLogger("herald.api")

HEADER = "Idempotency-Key"
REPLAYED = "Idempotency-Replayed"
# Visible ASCII, inner spaces allowed, 1-255 characters.
KEY_PATTERN = r"^[!-~](?:[ -~]{0,253}[!-~])?$"
_KEY = re.compile(KEY_PATTERN)
# The key's workflow runs on the intake queue, which the API processes serve (api/core/intake.py): a POST
# with the header needs no job worker.
TASK_QUEUE = INTAKE_TASK_QUEUE
COMPLETE_TRIES = 3
# Answers not worth replaying: the caller should be able to try again and get another one.
NOT_KEPT = {401, 403, 408, 425, 429}
# An answer larger than this is sent but not kept (Temporal payloads stay small); none is today.
MAX_KEPT_BYTES = 512 * 1024
_HOP = {"content-length"}
# Where the middleware leaves a keyed request's job seed for its route (request.state).
JOB_SEED = "idempotency_job_seed"


def keyed_job_id(request: Request, prefix: str) -> str | None:
    """`<prefix>-<seed>` when the request carries an Idempotency-Key (None without): the id of the job (or
    batch) it creates, the same on every retry of it, so a retry finds what its first try started."""
    seed = getattr(request.state, JOB_SEED, None)
    return f"{prefix}-{seed}" if seed else None


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        raw = _header(scope, b"idempotency-key")
        if raw is None:
            return await self.app(scope, receive, send)
        credential = _credential(scope)
        if credential is None:  # an open route, no such route, or a caller the route refuses
            return await self.app(scope, receive, send)
        key = raw.decode("latin-1")
        if not _KEY.match(key):
            error = validation_error(
                HEADER, "must be 1 to 255 printable ASCII characters, not starting or ending with a space"
            )
            return await _send_error(send, error)
        body = await _read_body(receive)  # the body limit (an outer middleware) applies while reading
        if body is None:
            # Gone mid-upload: claiming the key for part of a body would refuse the client's full retry.
            return
        store = KeyStore(scope["app"].state.gateway, self.settings, key_workflow_id(credential, key))
        request_id = uuid.uuid4().hex
        try:
            outcome = await store.claim(
                Claim(
                    fingerprint=_fingerprint(scope, body),
                    request_id=request_id,
                    lease_s=self.settings.idempotency_lease_seconds,
                )
            )
        except ApiError as error:
            return await _send_error(send, error)
        if outcome.outcome == "conflict":
            return await _send_error(
                send,
                ApiError(
                    409,
                    "idempotency_conflict",
                    f"this {HEADER} was first used with another request (method, path or "
                    "body); use a new key for a new request",
                ),
            )
        if outcome.outcome == "replay":
            assert outcome.answer is not None
            log_event("idempotency.replayed", path=scope["path"], status=outcome.answer.status)
            return await _send_answer(send, outcome.answer, replayed=True)
        assert store.run_id is not None
        scope.setdefault("state", {})[JOB_SEED] = job_seed(credential, key, store.run_id)
        await self._first(scope, body, receive, send, store, request_id)

    async def _first(
        self, scope: Scope, body: bytes, receive: Receive, send: Send, store: KeyStore, request_id: str
    ) -> None:
        """Run the request; keep its answer (or free the key) before the caller sees it."""
        replayed_body = False

        async def body_once() -> Message:
            nonlocal replayed_body
            if not replayed_body:
                replayed_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, body_once, capture)
        except BaseException:
            # An unexpected error (answered 500 further out) or a cancelled request: not an answer.
            await asyncio.shield(store.complete(Completion(request_id=request_id)))
            raise
        assert start is not None, "the app answered nothing"
        answer = StoredAnswer(
            status=start["status"],
            headers=[
                [k.decode("latin-1"), v.decode("latin-1")]
                for k, v in start.get("headers", [])
                if k.decode("latin-1").lower() not in _HOP
            ],
            body=b"".join(chunks).decode("latin-1"),
        )
        kept = _worth_keeping(answer.status) and len(answer.body) <= MAX_KEPT_BYTES
        await asyncio.shield(store.complete(Completion(request_id=request_id, answer=answer if kept else None)))
        await _send_answer(send, answer, replayed=False)


class KeyStore:
    """One key's workflow, through Herald's client (its codec encrypts the stored answers)."""

    def __init__(self, gateway: Any, settings: Settings, workflow_id: str) -> None:
        self.gateway, self.settings, self.workflow_id = gateway, settings, workflow_id
        # The key's run (its first run's id), once claimed: the jobs of the request are named after it.
        self.run_id: str | None = None

    async def claim(self, claim: Claim) -> ClaimOutcome:
        client = await self.gateway.client()
        # A waiting claim may wait out the holder's whole lease.
        deadline = claim.lease_s + RPC_TIMEOUT.total_seconds()
        async with one_update_at_a_time(self.workflow_id):
            return await self._claim(client, claim, deadline)

    async def _claim(self, client: Client, claim: Claim, deadline: float) -> ClaimOutcome:
        ending_retried = False
        for attempt in range(BUSY_RETRIES):
            start = WithStartWorkflowOperation(
                IdempotencyKeyWorkflow.run,
                KeyStart(keep_s=self.settings.idempotency_keep_hours * 3600),
                id=self.workflow_id,
                task_queue=TASK_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                static_summary="Idempotency-Key",
            )
            try:
                outcome = await asyncio.wait_for(
                    client.execute_update_with_start_workflow(
                        IdempotencyKeyWorkflow.claim,
                        claim,
                        start_workflow_operation=start,
                        rpc_timeout=timedelta(seconds=deadline),
                    ),
                    deadline,
                )
                self.run_id = (await start.workflow_handle()).first_execution_run_id
                return outcome
            except (TimeoutError, RPCTimeoutOrCancelledError) as exc:
                raise temporal_unavailable(f"the {HEADER} store did not answer within {deadline:g} s") from exc
            except RPCError as exc:
                if is_unreachable(exc):
                    raise temporal_unavailable(exc.message) from exc
                if too_many_updates(exc) and attempt < BUSY_RETRIES - 1:
                    await pause_when_busy(attempt)
                    continue
                # The key's workflow was just ending (its day is over): once more, on a new one.
                if ending_retried or too_many_updates(exc):
                    raise ApiError(
                        502, "temporal_error", f"Temporal refused the {HEADER} claim: {exc.message}"
                    ) from exc
                ending_retried = True
            except WorkflowUpdateFailedError as exc:
                if ending_retried:
                    raise ApiError(502, "temporal_error", f"the {HEADER} claim failed: {exc}") from exc
                ending_retried = True
        raise AssertionError("unreachable")

    async def complete(self, done: Completion) -> None:
        # Tried a few times: an answer not stored frees the key when its lease ends, and a retry after
        # that would run the request again.
        for attempt in range(COMPLETE_TRIES):
            try:
                client = await self.gateway.client()
                await client.get_workflow_handle(self.workflow_id).signal(
                    IdempotencyKeyWorkflow.complete, done, rpc_timeout=RPC_TIMEOUT
                )
                return
            except Exception as exc:  # noqa: BLE001 - the lease frees the key anyway
                if attempt == COMPLETE_TRIES - 1:
                    log.error(
                        "Idempotency-Key answer not stored (%s): the key frees itself after %g s, and a "
                        "retry after that runs the request again",
                        exc,
                        self.settings.idempotency_lease_seconds,
                    )
                    return
                await asyncio.sleep(0.2 * (attempt + 1))


def _worth_keeping(status: int) -> bool:
    return 200 <= status < 300 or (400 <= status < 500 and status not in NOT_KEPT)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value
    return None


def _routes(app: FastAPI) -> list[tuple[Any, APIRoute]]:
    """Every route as (what matches a request, the APIRoute that answers it), or the route twice
    (FastAPI >= 0.13x includes routers lazily: app.routes holds the included routers)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI: app.routes is already flat
        return [(route, route) for route in app.routes]
    return [(ctx, ctx.original_route) for ctx in iter_route_contexts(app.routes)]


def _route(scope: Scope) -> APIRoute | None:
    for matcher, route in _routes(scope["app"]):
        match, _ = matcher.matches(scope)
        if match == Match.FULL:
            return route if isinstance(route, APIRoute) else None
    return None


def _guards(route: APIRoute) -> set[Any]:
    # The route's own and its router's dependencies, as api.core.auth.unauthorized_caller reads them.
    return {getattr(d, "dependency", None) for d in route.dependencies}


def _credential(scope: Scope) -> str | None:
    """The credential the key is scoped to, or None when the request is not the store's business:
    no such route, an open route, or a caller the route will refuse (401/403) without the store."""
    route = _route(scope)
    if route is None:
        return None
    guards = _guards(route)
    request = Request(scope)
    settings = scope["app"].state.settings
    authorization = request.headers.get("authorization", "")
    if require_admin_token in guards:
        if _admin_refusal(settings, request) is not None:
            return None
        return "admin\n" + _admin_credential(authorization)
    if require_client_key in guards:
        scheme, _, token = authorization.partition(" ")
        tenant = client_tenant(settings, token.strip()) if scheme.lower() == "bearer" else None
        if tenant is None:
            return None
        # Scoped to the tenant, not the key: a client that moves to the tenant's second key (rotation)
        # keeps its keys; the same key in another tenant is another key (and names other jobs).
        return "tenant\n" + tenant
    return None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body; None when the client went away before sending all of it."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _fingerprint(scope: Scope, body: bytes) -> str:
    """The request, as the key compares it: method, path, query and body (JSON by value)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, RecursionError):
        canonical = body
    digest = hashlib.sha256()
    for part in (scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), canonical):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


async def _send_answer(send: Send, answer: StoredAnswer, replayed: bool) -> None:
    body = answer.body.encode("latin-1")
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    headers.append((b"content-length", str(len(body)).encode()))
    if replayed:
        headers.append((REPLAYED.lower().encode(), b"true"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, error: ApiError) -> None:
    body = json.dumps({"error": error.error, "message": error.message, "details": error.details}).encode()
    headers = [["content-type", "application/json"], *[[k, v] for k, v in (error.headers or {}).items()]]
    await _send_answer(
        send, StoredAnswer(status=error.status, headers=headers, body=body.decode("latin-1")), replayed=False
    )


# ---- the OpenAPI schema: the header on every POST that takes a credential ----------------------
HEADER_PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": "makes a retried POST safe: the same key with the same request (method, path, body) returns the "
    "first answer (status, body; `Idempotency-Replayed: true`) and starts nothing; with another "
    "request it is a 409 `idempotency_conflict`. Scoped to the tenant, kept 24 h "
    "(HERALD_IDEMPOTENCY_KEEP_HOURS); 5xx, 401, 403, 408, 425 and 429 answers are not kept",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": KEY_PATTERN},
}
REPLAYED_HEADER = {
    REPLAYED: {
        "description": "`true` on an answer replayed for a repeated `Idempotency-Key`",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
_ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_CONFLICT = "`idempotency_conflict`: the `Idempotency-Key` was first used with another request"
_BAD_KEY = "`validation_error` on `Idempotency-Key`: not 1 to 255 printable ASCII characters"


def document(app: FastAPI) -> None:
    """Add the header (and its 400, 409 and replay header) to every guarded POST of the schema."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()
        if not fresh:
            return schema
        for matcher, route in _routes(app):
            if not (
                isinstance(route, APIRoute)
                and "POST" in (matcher.methods or ())
                and _guards(route) & {require_client_key, require_admin_token}
            ):
                continue
            operation = schema["paths"].get(matcher.path_format, {}).get("post")
            if operation is None:  # not in the schema (include_in_schema=False)
                continue
            operation.setdefault("parameters", []).append(dict(HEADER_PARAMETER))
            responses = operation["responses"]
            for status, answer in responses.items():
                if status.startswith("2"):
                    answer["headers"] = answer.get("headers", {}) | REPLAYED_HEADER
            for status, say in (("400", _BAD_KEY), ("409", _CONFLICT)):
                if status in responses:
                    responses[status]["description"] += f"; or {say}"
                else:
                    responses[status] = {"description": say, "content": _ERROR_JSON}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
