"""The projector: applies each partition's log to the views, batch by batch.

A batch's view changes and the checkpoint move are one script call that first
checks the checkpoint is still where the batch started (apply.lua), so two
projectors on one partition never apply an event twice, and a view is always a
deterministic function of the log up to its checkpoint. While a rebuild holds the
projection (projections/switch.py) nothing is applied: the projector waits.

Batches are pipelined: the next batch's entries and records are read before a
batch's script call is sent, and its changes are computed here while that call runs
in Redis. It starts from the records the previous batch left (``ViewBatch.carried``)
and fetches only the others, which that call does not write; it is sent only once
that call has applied, and only if no other writer moved the checkpoint in between
(apply.lua's writer check), else it is dropped and the projector starts again from
the checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from projections import runs, schedules, workflows
from projections.batch import ViewBatch
from service import telemetry
from service.domain.upcasters import upcast
from service.store.eventstore import EventStore, StoredEvent, decode_entry
from service.store.keys import PROJECTION_VIEWS, Keyspace
from service.store.scripts import load_script

log = logging.getLogger(__name__)

Handler = Callable[[ViewBatch, StoredEvent], Awaitable[None]]
Reads = Callable[[StoredEvent], list[str]]
VIEWS: tuple[tuple[frozenset[str], Reads, Handler], ...] = (
    (schedules.EVENTS, schedules.reads, schedules.apply),
    (workflows.EVENTS, workflows.reads, workflows.apply),
    (runs.EVENTS, runs.reads, runs.apply),
)
"""Each view's events, the records it reads for one, and its handler, in the order applied."""
_ROUTES: dict[str, tuple[tuple[Reads, Handler], ...]] = {}


def route(event_type: str) -> tuple[tuple[Reads, Handler], ...]:
    """The views an event type changes (most change one or two of the three)."""
    found = _ROUTES.get(event_type)
    if found is None:
        found = _ROUTES[event_type] = tuple((r, h) for ev, r, h in VIEWS if event_type in ev)
    return found


BATCH_SIZE = 500
PIPELINED_BATCHES = 32
"""Batches one ``step`` applies back to back at most before it looks at its stop event."""
YIELD_EVERY = 100
BLOCK_MS = 1000
RETRY_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
HELD = -1
"""apply.lua's answer while a rebuild holds the projection."""
HELD_POLL_S = 0.05


class Projector:
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        *,
        name: str = PROJECTION_VIEWS,
        namespace: str = "view",
        batch_size: int = BATCH_SIZE,
        on_applied: Callable[[int, str], None] | None = None,
    ) -> None:
        self.on_applied = on_applied
        self.redis = redis
        self.keys = keys
        self.name = name
        self.namespace = namespace
        self.batch_size = batch_size
        self.store = EventStore(redis, keys)
        self._apply = load_script(redis, "projections", "apply.lua")

    async def checkpoint(self, partition: int) -> str:
        raw = await self.redis.hget(self.keys.checkpoint(partition, self.name), "position")
        return raw.decode() if isinstance(raw, bytes) else (raw or "")

    async def apply_batch(self, partition: int, start: str, events: list[StoredEvent]) -> bool:
        """Apply ``events`` (which follow checkpoint ``start``); False if another did first
        or a rebuild holds the projection."""
        batch = await self._compute(partition, events, None)
        call = self._call(partition, start, events, batch, uuid.uuid4().hex, continuing=False)
        return await call > 0

    async def _compute(
        self, partition: int, events: list[StoredEvent], previous: ViewBatch | None
    ) -> ViewBatch:
        """The view changes of ``events``, from the records ``previous`` left and the views."""
        batch = await self._prepare(partition, events, previous)
        await _fold(batch, events)
        return batch

    async def _prepare(
        self, partition: int, events: list[StoredEvent], previous: ViewBatch | None
    ) -> ViewBatch:
        """A batch for ``events`` holding every record they read: those ``previous`` left,
        the others fetched in one round trip (none of them is one ``previous`` writes)."""
        batch = ViewBatch(
            self.redis,
            self.keys.view_prefix(partition, self.namespace),
            previous.carried() if previous is not None else None,
        )
        await batch.prefetch(
            name for e in events for reads, _ in route(e.type) for name in reads(e)
        )
        return batch

    def _call(
        self,
        partition: int,
        start: str,
        events: list[StoredEvent],
        batch: ViewBatch,
        writer: str,
        *,
        continuing: bool,
    ) -> Awaitable[int]:
        """apply.lua's answer: 1 applied, 0 the checkpoint moved, HELD. The changes are
        framed here, before anything else can touch the batch's records."""
        keys = [
            self.keys.checkpoint(partition, self.name),
            self.keys.projection_hold(partition, self.name),
        ]
        args = [
            start,
            events[-1].position,
            writer,
            "1" if continuing else "0",
            self.keys.view_prefix(partition, self.namespace),
            batch.payload(),
        ]
        return self._send(partition, events, keys, args)

    async def _send(
        self, partition: int, events: list[StoredEvent], keys: list[str], args: list[Any]
    ) -> int:
        if telemetry.tracing():
            with telemetry.span(
                "cronstream.project",
                kind=SpanKind.CONSUMER,
                link_parents=[e.meta.get("traceparent") for e in events],
                attributes={
                    "cronstream.projection": self.name,
                    "cronstream.partition": partition,
                    "messaging.batch.message_count": len(events),
                    "cronstream.log_position": events[-1].position,
                },
            ):
                return int(await self._apply(keys=keys, args=args))
        return int(await self._apply(keys=keys, args=args))

    async def step(self, partition: int, block_ms: int | None = None) -> int:
        """Apply the batches after the checkpoint (a bounded run of them); return how many
        events they held.

        Following the log (``block_ms``), a held projection is polled, not spun on."""
        applied = await self._advance(partition, block_ms)
        if applied == HELD:
            if block_ms is not None:
                await asyncio.sleep(min(block_ms / 1000, HELD_POLL_S))
            return 0
        return applied

    async def _read(self, partition: int, after: str, block_ms: int | None) -> list[StoredEvent]:
        log_key = self.keys.log(partition)
        reply: Any
        if block_ms is None:
            start = "-" if after in ("", "0", "0-0") else f"({after}"
            reply = await self.redis.xrange(log_key, min=start, count=self.batch_size)
            return [_decode(partition, eid, fields) for eid, fields in reply]
        reply = await self.redis.xread(
            {log_key: after or "0-0"}, count=self.batch_size, block=block_ms
        )
        return [_decode(partition, eid, f) for _stream, entries in reply for eid, f in entries]

    async def _advance(self, partition: int, block_ms: int | None) -> int:
        """Events applied by the next batches (up to ``PIPELINED_BATCHES``), or HELD when
        the first was held. The run stops at the log's end, or at a refused batch.

        Redis and this process work side by side: the next batch's entries are read, and
        its records fetched, before a batch's script call is sent; its changes are
        computed while the call runs."""
        start = await self.checkpoint(partition)
        events = await self._read(partition, start, block_ms)
        if not events:
            return 0
        ahead: asyncio.Future[list[StoredEvent]] | None = asyncio.ensure_future(
            self._read(partition, events[-1].position, None)
        )
        try:
            batch = await self._compute(partition, events, None)
            writer, total = uuid.uuid4().hex, 0
            for n in range(PIPELINED_BATCHES):
                following = await ahead if ahead is not None else []
                ahead = None
                more = bool(following) and n < PIPELINED_BATCHES - 1
                if more:
                    ahead = asyncio.ensure_future(
                        self._read(partition, following[-1].position, None)
                    )
                    upcoming = await self._prepare(partition, following, batch)
                call = asyncio.ensure_future(
                    self._call(partition, start, events, batch, writer, continuing=n > 0)
                )
                if more:
                    await _meanwhile(call, _fold(upcoming, following))
                applied = await call
                if applied <= 0:
                    return HELD if applied == HELD and total == 0 else total
                total += len(events)
                if self.on_applied is not None:
                    self.on_applied(partition, events[-1].position)
                if not more:
                    break
                start, events, batch = events[-1].position, following, upcoming
            return total
        finally:
            if ahead is not None:  # a read ahead is never left in flight
                with contextlib.suppress(Exception):
                    await ahead

    async def catch_up(self, partition: int, max_batches: int = 1_000_000) -> int:
        """Apply everything in the log now; return the number of events applied (it stops
        early while a rebuild holds the projection)."""
        total = 0
        for _ in range(max_batches):
            applied = await self._advance(partition, None)
            if applied == HELD:
                break
            if applied == 0 and await self.checkpoint(partition) == (
                await self.store.last_position(partition) or ""
            ):
                break
            total += applied
        return total

    async def run(self, partition: int, stop: asyncio.Event) -> None:
        """Follow the partition's log until ``stop`` is set, riding out Redis outages."""
        failures = 0
        while not stop.is_set():
            try:
                await self.step(partition, block_ms=BLOCK_MS)
                failures = 0
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
                failures += 1
                log.warning("projector partition %d: redis unavailable (%s)", partition, exc)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass


T = TypeVar("T")


def _decode(partition: int, entry_id: Any, fields: dict[Any, Any]) -> StoredEvent:
    """``decode_entry``, shortened for the bytes a client without ``decode_responses``
    answers: the projector decodes every event of the log, and the general version's
    per-field lookups cost it a fifth of its time."""
    if not isinstance(entry_id, bytes):
        return decode_entry(partition, entry_id, fields)
    event_type = fields[b"type"].decode()
    data = orjson.loads(fields.get(b"data") or b"{}")
    version, data = upcast(event_type, int(fields.get(b"v") or 1), data)
    return StoredEvent(
        position=entry_id.decode(),
        partition=partition,
        type=event_type,
        v=version,
        sid=fields.get(b"sid", b"").decode(),
        data=data,
        meta=orjson.loads(fields.get(b"meta") or b"{}"),
    )


async def _fold(batch: ViewBatch, events: list[StoredEvent]) -> None:
    """Apply ``events`` to ``batch`` through the handlers of the views they change.

    It steps aside every ``YIELD_EVERY`` events: the handlers rarely wait on Redis, and
    the script call of the batch before this one must get sent meanwhile."""
    for i, event in enumerate(events):
        if i % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        for _, handler in route(event.type):
            await handler(batch, event)


async def _meanwhile(call: asyncio.Future[int], work: Awaitable[T]) -> T:
    """``work``'s result, awaited while ``call`` runs; if ``work`` fails, ``call`` is
    still seen to its end (so no script call is left unobserved) before the error."""
    try:
        return await work
    except BaseException:
        with contextlib.suppress(BaseException):
            await asyncio.shield(call)
        raise
