"""Time travel: every schedule as it stood at an instant or a log position, from the log alone.

Replay folds the same projection handlers the live projector runs
(``projections.schedules.apply``) over the log, into ``MemoryBatch`` instead of
Redis, so a replayed record is exactly the record the live view held once it had
applied the same events. Nothing here reads a view.

*At an instant T* folds, in log order, every event whose time is at or before T.
An event's time is its stream id (Redis's clock at append), except for events
carrying ``meta.effective_at`` (commands appended through an injected clock),
where that wins — the same rule as ``service.audit.fires.segments``. With the
system clock the two agree and the events folded are a prefix of the log.

*At a position P* folds every event at or before P: a stream id of one partition,
or a feed cursor of ``GET /v1/events`` (one position per partition).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis

from projections import schedules
from projections.batch import Record, ViewBatch
from service.domain.schedule import KIND
from service.store.archive_reader import read_all
from service.store.archive_record import locate
from service.store.boundary import translate_redis_errors
from service.store.eventstore import (
    EventStore,
    StoredEvent,
    as_text,
    decode_entry,
    parse_position,
)
from service.store.feed import parse_cursor
from service.store.keys import Keyspace

PAGE = 2000


class MemoryBatch:
    """``ViewBatch``'s interface over a dict: what handlers write stays in memory.

    ``get`` returns a shallow copy, like ``ViewBatch.get``, so handlers behave the
    same on both.
    """

    def __init__(self) -> None:
        self.records: dict[str, Record | None] = {}
        self.indexes: dict[str, set[str]] = {}

    async def prefetch(self, names: list[str]) -> None:
        """Nothing to fetch: every record is already here."""

    async def get(self, name: str) -> Record | None:
        record = self.records.get(name)
        return dict(record) if record is not None else None

    def put(self, name: str, record: Record) -> None:
        self.records[name] = record

    def index(self, name: str, member: str, present: bool) -> None:
        members = self.indexes.setdefault(name, set())
        if present:
            members.add(member)
        else:
            members.discard(member)


def event_time(event: StoredEvent) -> int:
    """When an event took effect: ``meta.effective_at`` if it has one, else its append time."""
    effective = event.meta.get("effective_at")
    return (
        int(effective) if isinstance(effective, int | float | str) and effective != "" else event.at
    )


@dataclass(frozen=True)
class Point:
    """Where to stop: an instant (epoch ms) or per-partition positions (None = no limit)."""

    at: int | None = None
    positions: tuple[str | None, ...] | None = None

    def includes(self, event: StoredEvent) -> bool:
        if self.positions is not None:
            limit = self.positions[event.partition]
            if limit is not None and parse_position(event.position) > parse_position(limit):
                return False
        return self.at is None or event_time(event) <= self.at

    def past(self, event: StoredEvent) -> bool:
        """True once the log has gone beyond the point for good (positions only)."""
        if self.positions is None:
            return False
        limit = self.positions[event.partition]
        return limit is not None and parse_position(event.position) > parse_position(limit)


def position_point(position: str, keys: Keyspace, schedule_id: str | None = None) -> Point:
    """A point from a feed cursor, or from one stream id (of ``schedule_id``'s partition).

    Raises ValueError when the position is malformed or names no partition.
    """
    if "." in position or keys.partitions == 1:
        return Point(positions=tuple(parse_cursor(position, keys.partitions)))
    if schedule_id is None:
        raise ValueError(
            f"with {keys.partitions} partitions a position must be a feed cursor "
            "(one stream id per partition, joined by '.'), or name a schedule"
        )
    (single,) = parse_cursor(position, 1)
    limits: list[str | None] = [None] * keys.partitions
    limits[keys.partition_of(schedule_id)] = single
    # the other partitions do not matter for one schedule
    return Point(positions=tuple(limits))


async def read_log(
    redis: Redis,
    keys: Keyspace,
    partition: int,
    archive_dir: Path | None = None,
    after: str = "0-0",
) -> AsyncIterator[StoredEvent]:
    """Archived then live events of a partition, in order.

    The archive is ``archive_dir`` when given, else the one the partition's archive
    record names; raises ArchiveUnavailable when events after ``after`` were trimmed
    into an archive that cannot be read.
    """
    located = await locate(redis, keys, partition, archive_dir)
    directory = await located.require(after)
    if directory is not None:
        async for event in read_all(redis, keys, partition, directory, after):
            yield event
        return
    async for event in read_live(redis, keys, partition, after):
        yield event


@translate_redis_errors
async def read_live(
    redis: Redis, keys: Keyspace, partition: int, after: str = "0-0"
) -> AsyncIterator[StoredEvent]:
    """The live log after ``after`` up to its last entry when the read began, in pages;
    the next page is fetched while the current one is consumed."""
    end = await EventStore(redis, keys).last_position(partition)
    if end is None:
        return
    log = keys.log(partition)
    pages = int(await redis.xlen(log)) // PAGE + 2

    def fetch(start: str) -> asyncio.Task[Any]:
        return asyncio.ensure_future(redis.xrange(log, min=start, max=end, count=PAGE))

    pending = fetch("-" if after in ("", "0", "0-0") else f"({after}")
    try:
        for _ in range(pages):
            entries: Any = await pending
            if len(entries) == PAGE:
                pending = fetch("(" + as_text(entries[-1][0]))
            for eid, fields in entries:
                yield decode_entry(partition, eid, fields)
            if len(entries) < PAGE:
                return
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending


@dataclass
class Replay:
    """The schedule records a replay built, and how far it read."""

    records: dict[str, Record] = field(default_factory=dict)
    events: int = 0
    last_time: int | None = None
    through: dict[int, str] = field(default_factory=dict)

    def schedule(self, schedule_id: str) -> Record | None:
        """The schedule's record at the point, or None if it did not exist (or was deleted)."""
        record = self.records.get(schedules.record_name(schedule_id))
        return None if record is None or record.get("deleted") else record

    def live_schedules(self) -> list[Record]:
        """Every schedule that existed at the point, in id order."""
        found = [
            r
            for name, r in self.records.items()
            if name.startswith("schedule:") and not r.get("deleted")
        ]
        return sorted(found, key=lambda r: str(r["id"]))


async def fold(
    events: AsyncIterator[StoredEvent], point: Point, replay: Replay, schedule_id: str | None
) -> None:
    """Apply the schedule handlers to the events up to ``point``, into ``replay``."""
    batch = MemoryBatch()
    view = cast(ViewBatch, batch)  # MemoryBatch has the interface handlers use
    bounded = point.positions is not None or point.at is not None
    last_time = replay.last_time
    async for event in events:
        if bounded:
            if point.past(event):
                break
            if not point.includes(event):
                continue
        if schedule_id is not None and event.sid != schedule_id:
            continue
        await schedules.apply(view, event)
        replay.events += 1
        replay.through[event.partition] = event.position
        moment = event_time(event)
        if last_time is None or moment > last_time:
            last_time = moment
    replay.last_time = last_time
    for name, record in batch.records.items():
        if record is not None:
            replay.records[name] = record


async def replay(
    redis: Redis,
    keys: Keyspace,
    point: Point,
    *,
    schedule_id: str | None = None,
    archive_dir: Path | None = None,
) -> Replay:
    """Every schedule (or one) at ``point``, from the log and the archives."""
    result = Replay()
    partitions = range(keys.partitions) if schedule_id is None else [keys.partition_of(schedule_id)]
    for p in partitions:
        await fold(read_log(redis, keys, p, archive_dir), point, result, schedule_id)
    return result


async def replay_schedule_indexed(
    store: EventStore, schedule_id: str, point: Point, bound: int = 1_000_000
) -> Replay:
    """One schedule at ``point``, reading its log entries through its event index.

    The index (``cs:{p}:events:schedule:<id>``) is written by the same scripts that
    append to the log, in the same call, so it lists exactly the schedule's entries;
    it saves scanning the whole partition for an API request.
    """
    result = Replay()

    async def events() -> AsyncIterator[StoredEvent]:
        for offset in range(0, bound, PAGE):
            page = await store.read_aggregate(KIND, schedule_id, offset, PAGE)
            for event in page:
                yield event
            if len(page) < PAGE:
                return

    await fold(events(), point, result, schedule_id)
    return result
