"""The projector: applies each partition's log to the views, batch by batch.

A batch's view changes and the checkpoint move are one script call that first
checks the checkpoint is still where the batch started (apply.lua), so two
projectors on one partition never apply an event twice, and a view is always a
deterministic function of the log up to its checkpoint. While a rebuild holds the
projection (projections/switch.py) nothing is applied: the projector waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from projections import runs, schedules, workflows
from projections.batch import ViewBatch
from service import telemetry
from service.store.eventstore import EventStore, StoredEvent, decode_entry
from service.store.keys import PROJECTION_VIEWS, Keyspace
from service.store.scripts import load_script

log = logging.getLogger(__name__)

Handler = Callable[[ViewBatch, StoredEvent], Awaitable[None]]
HANDLERS: tuple[Handler, ...] = (schedules.apply, workflows.apply, runs.apply)

RECORD_KINDS = ("schedule", "workflow")
BATCH_SIZE = 500
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
        return await self._applied(partition, start, events) > 0

    async def _applied(self, partition: int, start: str, events: list[StoredEvent]) -> int:
        """apply.lua's answer: 1 applied, 0 the checkpoint moved, HELD."""
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
                return await self._apply_batch(partition, start, events)
        return await self._apply_batch(partition, start, events)

    async def _apply_batch(self, partition: int, start: str, events: list[StoredEvent]) -> int:
        batch = ViewBatch(self.redis, self.keys.view_prefix(partition, self.namespace))
        names = [f"{kind}:{e.sid}" for e in events for kind in RECORD_KINDS]
        names += [
            f"run:{e.data['run_id']}"
            for e in events
            if e.type in runs.EVENTS and isinstance(e.data.get("run_id"), str)
        ]
        await batch.prefetch(names)
        for event in events:
            for handler in HANDLERS:
                await handler(batch, event)
        view_keys, ops = batch.operations()
        applied = await self._apply(
            keys=[
                self.keys.checkpoint(partition, self.name),
                self.keys.projection_hold(partition, self.name),
                *view_keys,
            ],
            args=[start, events[-1].position, *ops],
        )
        return int(applied)

    async def step(self, partition: int, block_ms: int | None = None) -> int:
        """Apply the next batch after the checkpoint; return how many events it held.

        Following the log (``block_ms``), a held projection is polled, not spun on."""
        applied = await self._advance(partition, block_ms)
        if applied == HELD:
            if block_ms is not None:
                await asyncio.sleep(min(block_ms / 1000, HELD_POLL_S))
            return 0
        return applied

    async def _advance(self, partition: int, block_ms: int | None) -> int:
        """Events applied by the next batch, or HELD."""
        start = await self.checkpoint(partition)
        if block_ms is None:
            events = await self.store.read(partition, start, self.batch_size)
        else:
            reply: Any = await self.redis.xread(
                {self.keys.log(partition): start or "0-0"}, count=self.batch_size, block=block_ms
            )
            events = [
                decode_entry(partition, eid, fields)
                for _stream, entries in reply
                for eid, fields in entries
            ]
        if not events:
            return 0
        applied = await self._applied(partition, start, events)
        if applied <= 0:
            return HELD if applied == HELD else 0
        if self.on_applied is not None:
            self.on_applied(partition, events[-1].position)
        return len(events)

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
