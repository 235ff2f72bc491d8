"""``GET /v1/events/stream``: the event feed as Server-Sent Events, for subscribers.

Each event is one SSE message::

    id: <feed position>          the same cursor as an item's position in GET /v1/events
    event: <event type>
    data: <the same JSON item as GET /v1/events>

A client resumes after the last id it saw, with the ``Last-Event-ID`` header
(browsers' EventSource sends it when reconnecting) or ``?after=`` (the header
wins): nothing missed, nothing repeated. Filters (``?type=A,B``,
``?schedule=<sid>``) drop events but still advance the cursor; when the last
events read were all filtered out the server sends an id-only message
(``id: <cursor>`` and a blank line, no data), which per the SSE rules moves the
client's last event id without dispatching an event, so a reconnect does not read
the skipped stretch again.

Within a partition events come in log order; with several partitions the
stream interleaves them as they arrive (``GET /v1/events`` merges by time).
Either way each id is a cursor over every partition, so resuming is exact.

The handler reads every partition's log with ``XREAD BLOCK`` (1 s), at most
``BATCH`` entries per partition at a time — the per-connection buffer — and
writes them with back-pressure (a client that does not read for
``WRITE_TIMEOUT_S`` is dropped). A comment line every 15 s keeps idle
connections alive through proxies. It stops when the client goes away and when
the app shuts down (``close_streams`` on ``app.on_shutdown``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.api import auth, render
from service.api.context import KEYS, REDIS, STORE, query_text
from service.api.models import StreamEvent
from service.api.namespaces import namespace
from service.api.params import A_FEED_POSITION, AN_ID, feed_cursor, feed_cursor_pattern, id_filter
from service.api.routing import Param, Reply, route
from service.domain import namespaces
from service.domain.ids import ID_PATTERN
from service.domain.tokens import Scope, bearer_token
from service.errors import InvalidInput, StoreUnavailable
from service.store.cluster import xread_streams
from service.store.eventstore import ArchivedEvents, StoredEvent, decode_entry, parse_position
from service.store.feed import format_cursor, parse_cursor
from service.store.keys import Keyspace

BLOCK_MS = 1000
HEARTBEAT_S = 15.0
STANDING_S = 5.0
"""How often an open stream asks whether its token still stands: a revoked or expired
token ends its streams within this long."""
BATCH = 100
WRITE_TIMEOUT_S = 30.0
RETRY_DELAYS_S = (0.1, 0.25, 0.5, 1.0, 2.0)
MAX_FILTER = 2000
TYPES_PATTERN = r"^[A-Za-z0-9_, ]*$"
EVENT_STREAM = "text/event-stream"

_STOPS: weakref.WeakKeyDictionary[web.Application, asyncio.Event] = weakref.WeakKeyDictionary()
_OPEN: weakref.WeakKeyDictionary[web.Application, set[EventStream]] = weakref.WeakKeyDictionary()


def _stop_event(app: web.Application) -> asyncio.Event:
    stop = _STOPS.get(app)
    if stop is None:
        stop = _STOPS[app] = asyncio.Event()
    return stop


def open_streams(app: web.Application) -> int:
    """How many streams ``app`` is serving now."""
    return len(_OPEN.get(app, ()))


async def close_streams(app: web.Application) -> None:
    """``app.on_shutdown`` hook: every open stream of ``app`` ends within one block time."""
    _stop_event(app).set()


class Filter:
    def __init__(
        self, types: str | None, schedule: str | None, namespace: str = namespaces.DEFAULT
    ) -> None:
        if (types and len(types) > MAX_FILTER) or (schedule and len(schedule) > MAX_FILTER):
            raise InvalidInput.one("type" if types else "schedule", "too long")
        self.types = frozenset(t.strip() for t in (types or "").split(",") if t.strip()) or None
        # an event's sid is an internal id: the schedule of the stream's own namespace
        self.schedule = namespaces.qualify(namespace, schedule) if schedule else None
        self.namespace = namespace

    def matches(self, event: StoredEvent) -> bool:
        return (
            (self.types is None or event.type in self.types)
            and (self.schedule is None or event.sid == self.schedule)
            and namespaces.namespace_of(event.sid) == self.namespace
        )


def frame(cursor: str, event: StoredEvent) -> bytes:
    data = orjson.dumps(render.feed_event(cursor, event))
    head = b"id: " + cursor.encode() + b"\nevent: " + event.type.encode()
    return head + b"\ndata: " + data + b"\n\n"


class EventStream:
    """One subscriber's stream: where it is in each partition and what it wants."""

    def __init__(
        self,
        keys: Keyspace,
        positions: list[str],
        where: Filter,
        archive: ArchivedEvents | None = None,
    ) -> None:
        self.keys = keys
        self.positions = positions
        self.where = where
        self.sent = format_cursor(positions)
        self.archive = archive
        self._past_archive: set[int] = set()  # partitions whose position is past the trim

    async def archived(self) -> list[StoredEvent]:
        """Events after the stream's positions that an archive run trimmed from the log:
        they come first, exactly as the feed serves them."""
        if self.archive is None:
            return []
        events: list[StoredEvent] = []
        for p, position in enumerate(self.positions):
            if p in self._past_archive:
                continue
            found = await self.archive.after(p, position, BATCH)
            if not found:
                self._past_archive.add(p)
            events += found
        events.sort(key=lambda e: (parse_position(e.position), e.partition))
        return events

    async def read(self, redis: Any) -> list[StoredEvent]:
        archived = await self.archived()
        if archived:
            return archived
        streams = {self.keys.log(p): pos for p, pos in enumerate(self.positions)}
        reply: Any = await xread_streams(redis, streams, count=BATCH, block_ms=BLOCK_MS)
        events = []
        for stream, entries in reply or []:
            name = stream.decode() if isinstance(stream, bytes) else str(stream)
            partition = next(p for p in range(self.keys.partitions) if self.keys.log(p) == name)
            events += [decode_entry(partition, eid, fields) for eid, fields in entries]
        events.sort(key=lambda e: (parse_position(e.position), e.partition))
        return events

    def frames(self, events: list[StoredEvent]) -> bytes:
        """The messages for ``events``: matching ones, then an id-only message if the
        last ones were filtered out (so the client's last id covers them)."""
        out = []
        for event in events:
            self.positions[event.partition] = event.position
            if self.where.matches(event):
                cursor = format_cursor(self.positions)
                out.append(frame(cursor, event))
                self.sent = cursor
        cursor = format_cursor(self.positions)
        if cursor != self.sent:
            out.append(b"id: " + cursor.encode() + b"\n\n")
            self.sent = cursor
        return b"".join(out)


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@route(
    "GET",
    "/v1/events/stream",
    summary="The event feed as Server-Sent Events (text/event-stream)",
    tag="events",
    scope=Scope.EVENTS_READ,
    replies=(
        Reply(
            200,
            "The stream, open until the client leaves; each event as below",
            StreamEvent,
            media_type=EVENT_STREAM,
        ),
    ),
    problems=(422, 503),
    params=(
        feed_cursor("after", "Resume after this position (Last-Event-ID header wins)"),
        Param(
            "type",
            "Only these event types, comma-separated",
            {"type": "string", "maxLength": MAX_FILTER, "pattern": TYPES_PATTERN},
        ),
        id_filter("schedule", "Only events of this schedule (or other aggregate) id"),
        feed_cursor("Last-Event-ID", "The id of the last event received", location="header"),
    ),
)
async def stream_events(request: web.Request) -> web.StreamResponse:
    keys = request.app[KEYS]
    cursor = feed_cursor_pattern(keys.partitions)
    after = query_text(request, "after", cursor, A_FEED_POSITION)
    resume = request.headers.get("Last-Event-ID")
    field = "Last-Event-ID" if resume is not None else "after"
    if resume is not None and not re.fullmatch(cursor, resume):
        raise InvalidInput.one(field, f"must be {A_FEED_POSITION}")
    if resume is None:
        resume = after
    try:
        positions = parse_cursor(resume, keys.partitions)
    except ValueError as exc:
        raise InvalidInput.one(field, str(exc)) from None
    where = Filter(
        query_text(request, "type", TYPES_PATTERN, "event types, comma-separated"),
        query_text(request, "schedule", ID_PATTERN, AN_ID),
        namespace(request),
    )
    stream = EventStream(keys, positions, where, request.app[STORE].archive)
    first = await stream.archived()  # an archive that cannot be read is a problem, not a 200
    response = web.StreamResponse(
        headers={
            "Content-Type": EVENT_STREAM,
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    streams = _OPEN.setdefault(request.app, set())
    streams.add(stream)
    try:
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            await _pump(request, response, stream, first, _standing(request))
    finally:
        streams.discard(stream)
    return response


def _standing(request: web.Request) -> Callable[[], Awaitable[bool]] | None:
    """Whether the request's token still stands (None: the API asks for no token)."""
    if auth.ADMITTED not in request:
        return None
    token = bearer_token(request.headers.get(auth.AUTHORIZATION))
    tokens, clock = request.app[auth.TOKENS], request.app.get(auth.AUTH_CLOCK)

    async def check() -> bool:
        return await tokens.standing(token, clock.now_ms() if clock else None)

    return check


async def _pump(
    request: web.Request,
    response: web.StreamResponse,
    stream: EventStream,
    first: list[StoredEvent],
    standing: Callable[[], Awaitable[bool]] | None,
) -> None:
    redis = request.app[REDIS]
    stop = _stop_event(request.app)
    await _write(response, b": stream open\n\n" + stream.frames(first))
    last_write = checked = time.monotonic()
    failures = 0
    while not stop.is_set() and not _gone(request):
        if standing is not None and time.monotonic() - checked >= STANDING_S:
            checked = time.monotonic()
            with contextlib.suppress(StoreUnavailable):  # an outage is not a revocation
                if not await standing():
                    await _write(response, b": the token no longer stands\n\n")
                    return
        try:
            events = await stream.read(redis)
            failures = 0
        except (RedisConnectionError, RedisTimeoutError, OSError):
            delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
            failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            events = []
        chunk = stream.frames(events)
        if chunk:
            await _write(response, chunk)
            last_write = time.monotonic()
        elif time.monotonic() - last_write >= HEARTBEAT_S:
            await _write(response, b": heartbeat\n\n")
            last_write = time.monotonic()


async def _write(response: web.StreamResponse, chunk: bytes) -> None:
    await asyncio.wait_for(response.write(chunk), timeout=WRITE_TIMEOUT_S)
