"""Live status: `GET /jobs/{id}/events` (Server-Sent Events) and `GET /jobs/{id}/status?wait=N` (long poll).

Neither polls Temporal on a timer. A watch reads the job's history once (which also answers 404
for an unknown id), then the job's state (api/jobs/service.py, exactly as `GET /jobs/{id}/status`),
and then waits on Temporal's own history long poll (`GetWorkflowExecutionHistory` with
`wait_new_event`, from the next event on): the call blocks on the server until the run writes a
new event, or returns empty after the server's long-poll interval (20 s), and is made again.
Where a watch of the job ended, its place in the history is kept (a HistoryMark), so the
client's next long poll takes it up from there instead of reading the whole history again.
Every state change of the lean lifecycle writes an event (a worker picking the workflow task up,
the first attempt's outcome and the backoff timer, the timer firing, the retry activity being
scheduled, its end, the run's end), except one: an activity retrying on the server (attempts
2..N) writes nothing until it ends, neither when an attempt starts nor when it fails into its
backoff. So while the job has an activity open, the watch also re-reads the state every
`HERALD_LIVE_REFRESH_SECONDS` and once right after `nextAttemptAt`. Each wake re-reads the state
and reports it only when the status body changed (its ETag, a hash of the whole body: no field of
it moves with the clock, so there is nothing volatile to leave out).

Every viewer of a job in one API process (its SSE streams and waiting long polls, of one tenant)
shares one watch, a JobFeed: one history long poll per job however many watch it, and each change
read once and handed to all of them. The events arrive on a Temporal connection of the watches'
own, so long polls never queue ahead of job starts behind a proxy that caps the streams per
connection. Viewers are bounded per API process by `HERALD_MAX_LIVE_STREAMS`; one more is a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import Request, Response
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.core.errors import ApiError, not_found, temporal_unavailable
from api.core.metrics import live_jobs, live_viewers
from api.core.temporal import TemporalGateway, is_unreachable
from api.jobs.batch_items import history_id
from api.jobs.models import JobStatus
from api.jobs.service import MAX_ID_LENGTH, job_status_body, load_job
from common.models import Phase
from common.settings import Settings
from common.tenants import Tenant
from common.vocabulary import JOB_STATUS

log = logging.getLogger("herald.api.live")

FINAL = frozenset(JOB_STATUS[phase] for phase in Phase if phase.final)
# What `since` and If-None-Match carry: the ETag of a status answer, with or without its quotes.
VERSION_PATTERN = r'^(W/)?"?[0-9a-f]{16}"?$'
_TAG = re.compile(r'(?:W/)?"?([0-9a-f]{16})"?')
MAX_WAIT_SECONDS = 60
# A history page holds a whole job's history (a job writes some 10-30 events).
HISTORY_PAGE_SIZE = 200
# The server answers an idle history long poll after its own interval (20 s by default); this only
# bounds a call the network lost.
LONG_POLL_RPC_TIMEOUT = timedelta(seconds=70)
# Re-read this long after an activity's `nextAttemptAt`, when the server has dispatched the retry.
AFTER_DUE_S = 0.1
# Jobs whose history mark an API process keeps (some 200 bytes each).
MARKS_KEPT = 10_000
# A feed nobody joined after it opened (its first viewer left while it was opening) ends after this.
UNJOINED_FEED_S = 5.0
# Seconds a client is told to wait when every stream slot is taken.
STREAMS_RETRY_AFTER = "5"
KEEP_ALIVE = b": keep-alive\n\n"

_OPENS_ACTIVITY = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
_CLOSES_ACTIVITY = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "activity_task_completed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity_task_failed_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity_task_timed_out_event_attributes",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "activity_task_canceled_event_attributes",
}


# ---- a status answer and its version ---------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    """A `GET /jobs/{id}/status` body as it goes on the wire, and its ETag."""

    body: dict[str, Any]
    etag: str  # with its quotes, as in the ETag header

    @property
    def version(self) -> str:
        """The ETag without quotes: the SSE event id."""
        return self.etag.strip('"')

    @property
    def final(self) -> bool:
        return self.body["status"] in FINAL


def snapshot_of(body: dict[str, Any]) -> Snapshot:
    wire = JobStatus.model_validate(body).model_dump(mode="json", exclude_unset=True)
    digest = hashlib.sha256(json.dumps(wire, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return Snapshot(body=wire, etag=f'"{digest[:16]}"')


async def read_status(client: Client, job_id: str, tenant: Tenant | None) -> Snapshot:
    return snapshot_of(job_status_body(await load_job(client, job_id, tenant)))


def versions(header: str | None) -> set[str]:
    """The versions named by `since` or an If-None-Match header (a list of entity tags; `*` is any)."""
    if not header:
        return set()
    if header.strip() == "*":
        return {"*"}
    return set(_TAG.findall(header))


def matches(snapshot: Snapshot, known: set[str]) -> bool:
    return "*" in known or snapshot.version in known


# ---- the bound on open streams -----------------------------------------------------------------
class StreamSlots:
    """Open SSE streams and waiting long polls of this API process, at most `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, 0

    def take(self) -> Callable[[], None]:
        """A slot, or a 503 when all are taken; returns its release (safe to call twice)."""
        if self.open >= self.limit:
            raise ApiError(
                503,
                "too_many_streams",
                f"this API process already serves {self.limit} live streams (HERALD_MAX_LIVE_STREAMS); "
                "retry later, or read GET /jobs/{id}/status",
                headers={"Retry-After": STREAMS_RETRY_AFTER},
            )
        self.open += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.open -= 1

        return release


# ---- watching one job ---------------------------------------------------------------------------
@dataclass(frozen=True)
class HistoryMark:
    """How far a watch read a job's history: the server's token for the next events, and the
    activities open at that point. Another watch of the job resumes from it (a client's next long
    poll) instead of reading the whole history again."""

    token: bytes
    open_activities: frozenset[int]


class HistoryMarks:
    """The last mark of the most recently watched jobs (a bounded LRU)."""

    def __init__(self, size: int = MARKS_KEPT) -> None:
        self.size = size
        self._marks: OrderedDict[str, HistoryMark] = OrderedDict()

    def get(self, job_id: str) -> HistoryMark | None:
        return self._marks.get(job_id)

    def keep(self, job_id: str, mark: HistoryMark | None) -> None:
        if mark is None:
            self._marks.pop(job_id, None)
            return
        self._marks[job_id] = mark
        self._marks.move_to_end(job_id)
        while len(self._marks) > self.size:
            self._marks.popitem(last=False)


class JobWatch:
    """One job's status, and its changes as Temporal records them."""

    def __init__(
        self, client: Client, job_id: str, tenant: Tenant, refresh_s: float, resume: HistoryMark | None = None
    ) -> None:
        # Every state it reads is the tenant's job's (load_job): another tenant's id is a 404 at open().
        self.client, self.job_id, self.tenant, self.refresh_s = client, job_id, tenant, refresh_s
        # The run whose history records the job's changes: a batch item's may be its batch's.
        self.history_id = job_id
        self.current: Snapshot | None = None
        self._resume = resume
        self._token = b""
        self._ended = False  # the run's history is complete: no event will come
        self._open_activities: set[int] = set()
        self._poll: asyncio.Task[int] | None = None

    async def open(self) -> Snapshot:
        """The state now. The history is read first (or taken up where an earlier watch left it),
        so any change after that point wakes the watch."""
        if len(self.job_id) > MAX_ID_LENGTH:
            raise not_found(self.job_id)
        try:
            if self._resume is not None:
                self._token, self._open_activities = self._resume.token, set(self._resume.open_activities)
            else:
                await self._history_start()
            self.current = await read_status(self.client, self.job_id, self.tenant)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise not_found(self.job_id) from exc
            raise
        return self.current

    def mark(self) -> HistoryMark | None:
        """Where the next watch of this job can take up the history; None once the run ended."""
        if self._ended or not self._token or self.history_id != self.job_id:
            return None  # (a batch item's watch reads its batch's history: not kept)
        return HistoryMark(self._token, frozenset(self._open_activities))

    async def change(self, until: float) -> Snapshot | None:
        """The first status that differs from `current`; None once `until` (loop time) has come."""
        assert self.current is not None, "open() first"
        loop = asyncio.get_running_loop()
        while True:
            refresh = self._refresh_at(loop)
            if self._ended and refresh is None:
                # The run is over and the job final: nothing more will be written to it. Wait out
                # `until` without a call, then read once (a redrive starts the job again, a new run).
                await asyncio.sleep(max(0.0, until - loop.time()))
                return self._changed(await read_status(self.client, self.job_id, self.tenant))
            timeout = max(0.0, min(until, refresh or until) - loop.time())
            if not self._ended and self._poll is None:
                self._poll = asyncio.create_task(self._next_events())
            if self._poll is not None:
                done, _ = await asyncio.wait({self._poll}, timeout=timeout)
            else:
                await asyncio.sleep(timeout)
                done = set()
            if done:
                poll, self._poll = self._poll, None
                if not poll.result() and not self._ended:  # result() re-raises the call's error
                    continue  # the server's long poll ran out with nothing new
            elif refresh is None or loop.time() < refresh:
                return None  # `until` came first
            changed = self._changed(await read_status(self.client, self.job_id, self.tenant))
            if changed is not None:
                return changed

    def _changed(self, latest: Snapshot) -> Snapshot | None:
        assert self.current is not None
        if latest.etag == self.current.etag:
            return None
        self.current = latest
        return latest

    def close(self) -> None:
        if self._poll is not None:
            if self._poll.done():
                if not self._poll.cancelled():
                    self._poll.exception()  # retrieved: no "never retrieved" warning
            else:
                self._poll.cancel()
            self._poll = None

    def _refresh_at(self, loop: asyncio.AbstractEventLoop) -> float | None:
        """When to re-read without an event: while an activity is open (its retries write none)."""
        if not self._open_activities and not (self._ended and not self.current.final):
            return None
        at = loop.time() + self.refresh_s
        due = self.current.body.get("nextAttemptAt") if self.current.body["status"] == "delayed" else None
        if due:
            wait = datetime.fromisoformat(due.replace("Z", "+00:00")).timestamp() - time.time()
            if wait > -AFTER_DUE_S:  # not already read after it
                at = min(at, loop.time() + max(0.0, wait) + AFTER_DUE_S)
        return at

    async def _history_start(self) -> None:
        try:
            await self._next_events()
        except RPCError as exc:
            # A batch item without a run of its own changes in the run that holds it (api/jobs/batch_items.py).
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            holder = await history_id(self.client, self.job_id, self.tenant)
            if not holder:
                raise
            self.history_id = holder
            await self._next_events()

    async def _next_events(self) -> int:
        """The events after the last ones read; blocks on the server while there are none."""
        request = GetWorkflowExecutionHistoryRequest(
            namespace=self.client.namespace,
            execution=WorkflowExecution(workflow_id=self.history_id),
            maximum_page_size=HISTORY_PAGE_SIZE,
            next_page_token=self._token,
            wait_new_event=True,
        )
        try:
            response = await self.client.workflow_service.get_workflow_execution_history(
                request, retry=True, timeout=LONG_POLL_RPC_TIMEOUT
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.DEADLINE_EXCEEDED and self._token:
                return 0  # a lost long poll: ask again from the same place
            raise
        # A running workflow's long poll always hands back where to go on; an empty token: it ended.
        self._token = response.next_page_token
        self._ended = not self._token
        self._track(response.history.events)
        return len(response.history.events)

    def _track(self, events: Any) -> None:
        event: HistoryEvent
        for event in events:
            if event.event_type == _OPENS_ACTIVITY:
                self._open_activities.add(event.event_id)
            elif event.event_type in _CLOSES_ACTIVITY:
                attributes = getattr(event, _CLOSES_ACTIVITY[event.event_type])
                self._open_activities.discard(attributes.scheduled_event_id)


# ---- one watch per job, shared by its viewers ----------------------------------------------------
class JobFeed:
    """A job's JobWatch followed by one task for every viewer of it in this process: the job's
    current status, and news of each change."""

    def __init__(self, watch: JobWatch, idle_s: float) -> None:
        assert watch.current is not None, "an opened watch"
        self.watch, self.idle_s = watch, idle_s
        self.current: Snapshot = watch.current
        self.viewers = 0
        self.error: BaseException | None = None  # the watch failed: every viewer gets it
        self._news = asyncio.Event()
        self._task: asyncio.Task[None] | None = asyncio.create_task(self._follow())

    async def change(self, seen: Snapshot, until: float) -> Snapshot | None:
        """The status once it differs from `seen`; None once `until` (loop time) has come."""
        loop = asyncio.get_running_loop()
        while self.error is None and self.current.etag == seen.etag:
            news = self._news
            try:
                await asyncio.wait_for(news.wait(), timeout=max(0.0, until - loop.time()))
            except TimeoutError:
                return None
        if self.error is not None:
            raise self.error
        return self.current

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                # `until` only paces the re-read of a job whose run has ended (a redrive starts it again).
                changed = await self.watch.change(until=loop.time() + self.idle_s)
                if changed is not None:
                    self.current = changed
                    self._tell()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an RPCError or ApiError, for each viewer to answer
            self.error = exc
            self._tell()

    def _tell(self) -> None:
        news, self._news = self._news, asyncio.Event()
        news.set()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.watch.close()


# ---- what the routes use ------------------------------------------------------------------------
class Live:
    """Per API process: the watches' Temporal connection, the jobs' feeds and the stream slots."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway = TemporalGateway(settings)  # a connection of the watches' own
        self.slots = StreamSlots(settings.max_live_streams)
        self.marks = HistoryMarks()
        # By tenant and job id: another tenant's viewer opens a feed of its own (a 404 at its open).
        self.feeds: dict[tuple[str, str], JobFeed] = {}
        self._opening: dict[tuple[str, str], asyncio.Future[JobFeed]] = {}

    async def watch(self, job_id: str, tenant: Tenant) -> JobWatch:
        watch = JobWatch(
            await self.gateway.client(),
            job_id,
            tenant,
            self.settings.live_refresh_seconds,
            resume=self.marks.get(job_id),
        )
        try:
            await watch.open()
        except BaseException:
            watch.close()
            raise
        return watch

    async def join(self, job_id: str, tenant: Tenant) -> JobFeed:
        """The job's feed, opened by its first viewer (the others wait for that one open)."""
        key = (tenant.name, job_id)
        feed = self.feeds.get(key)
        if feed is None or feed.error is not None:
            opening = self._opening.get(key)
            if opening is None:
                opening = self._opening[key] = asyncio.ensure_future(self._open(key, job_id, tenant))
                opening.add_done_callback(lambda _: self._opening.pop(key, None))
            # Shielded: a viewer that hangs up does not cancel the open others wait for.
            feed = await asyncio.shield(opening)
        feed.viewers += 1
        live_viewers.inc()
        return feed

    def leave(self, feed: JobFeed) -> None:
        feed.viewers -= 1
        live_viewers.dec()
        if feed.viewers <= 0:
            self._close(feed)

    async def _open(self, key: tuple[str, str], job_id: str, tenant: Tenant) -> JobFeed:
        feed = JobFeed(await self.watch(job_id, tenant), self.settings.live_heartbeat_seconds)
        stale = self.feeds.get(key)
        if stale is not None:  # it failed; its viewers are answering its error
            self._close(stale)
        self.feeds[key] = feed
        live_jobs.inc()
        asyncio.get_running_loop().call_later(UNJOINED_FEED_S, lambda: feed.viewers <= 0 and self._close(feed))
        return feed

    def _close(self, feed: JobFeed) -> None:
        key = (feed.watch.tenant.name, feed.watch.job_id)
        if self.feeds.get(key) is feed:
            del self.feeds[key]
            live_jobs.dec()
            self.marks.keep(feed.watch.job_id, feed.watch.mark())
        feed.close()

    async def wait_for_change(
        self, request: Request, job_id: str, tenant: Tenant, wait: float, known: set[str]
    ) -> tuple[Snapshot, bool]:
        """The long poll: the status once it is not one of `known` (empty: the state at the request),
        or after `wait` seconds. Returns the status and whether it changed."""
        release = self.slots.take()
        feed: JobFeed | None = None
        try:
            feed = await self.join(job_id, tenant)
            current = feed.current
            known = known or {current.version}
            if not matches(current, known):
                return current, True
            loop = asyncio.get_running_loop()
            until = loop.time() + wait
            changed = await _unless_disconnected(request, _first_unknown(feed, current, known, until))
            return (changed or current), changed is not None
        finally:
            if feed is not None:
                self.leave(feed)
            release()

    async def stream(self, job_id: str, tenant: Tenant, last_event_id: str | None) -> Response:
        """`GET /jobs/{id}/events`: 404 (and every refusal) before the stream starts."""
        release = self.slots.take()
        try:
            if last_event_id:
                # A client's EventSource reconnecting after the final state: 204 tells it to stop.
                latest = await read_status(await self.gateway.client(), job_id, tenant)
                if latest.final and latest.version in versions(last_event_id):
                    release()
                    return Response(status_code=204)
            feed = await self.join(job_id, tenant)
        except BaseException:  # an RPCError is answered by the app's handler (404, 503, 502)
            release()
            raise
        return LiveStreamResponse(
            _sse(feed, job_id, self.settings.live_heartbeat_seconds), on_close=lambda: (self.leave(feed), release())
        )


async def _first_unknown(feed: JobFeed, seen: Snapshot, known: set[str], until: float) -> Snapshot | None:
    while True:
        changed = await feed.change(seen, until)
        if changed is None or not matches(changed, known):
            return changed
        seen = changed


async def _unless_disconnected(request: Request, waiting: Any) -> Snapshot | None:
    """`waiting`, or None as soon as the client hangs up (the work stops with it)."""

    async def hung_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    answer = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(hung_up())
    try:
        await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (answer, gone):
            if not task.done():
                task.cancel()
    if answer.done() and not answer.cancelled():
        return answer.result()
    return None


def _api_error(exc: RPCError, job_id: str) -> ApiError:
    """What the app's handler would answer for `exc`, for a stream that has already started."""
    if exc.status == RPCStatusCode.NOT_FOUND:
        return not_found(job_id)
    if is_unreachable(exc):
        return temporal_unavailable(exc.message)
    log.error("Temporal refused a live status call: %s (%s)", exc.message, exc.status)
    return ApiError(502, "temporal_error", f"Temporal refused the call: {exc.message}")


# ---- Server-Sent Events -----------------------------------------------------------------------------
def sse_event(snapshot: Snapshot) -> bytes:
    data = json.dumps(snapshot.body, ensure_ascii=False, separators=(",", ":"))
    return f"event: status\nid: {snapshot.version}\ndata: {data}\n\n".encode()


def sse_error(error: ApiError) -> bytes:
    data = json.dumps(
        {"error": error.error, "message": error.message, "details": error.details},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return f"event: error\ndata: {data}\n\n".encode()


async def _sse(feed: JobFeed, job_id: str, heartbeat_s: float) -> AsyncIterator[bytes]:
    """The current state, then one event per change until a final one; a comment when idle."""
    loop = asyncio.get_running_loop()
    snapshot = feed.current
    yield sse_event(snapshot)
    while not snapshot.final:
        try:
            changed = await feed.change(snapshot, until=loop.time() + heartbeat_s)
        except RPCError as exc:
            # The client's EventSource reconnects and gets the current state first.
            yield sse_error(_api_error(exc, job_id))
            return
        except ApiError as exc:
            yield sse_error(exc)
            return
        if changed is None:
            yield KEEP_ALIVE
        else:
            snapshot = changed
            yield sse_event(snapshot)


class LiveStreamResponse(StreamingResponse):
    """A `text/event-stream` answer that frees its stream slot and its watch however it ends:
    the final event sent, the client gone (Starlette cancels the stream), or an error."""

    media_type = "text/event-stream"

    def __init__(
        self, content: AsyncIterator[bytes], status_code: int = 200, on_close: Callable[[], Any] = lambda: None
    ) -> None:
        super().__init__(
            content, status_code=status_code, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(RuntimeError):  # "already running": nothing left to close
                    await aclose()


async def get_live(request: Request) -> Live:
    """The app's Live, made on first use."""
    live = getattr(request.app.state, "live", None)
    if live is None:
        live = request.app.state.live = Live(request.app.state.settings)
    return live
