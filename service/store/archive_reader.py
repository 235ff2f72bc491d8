"""Reading a partition's history whether it lives in archive segments or in the log.

``archive`` (service/audit/archive.py) moves old log entries into committed
segments (``segments``) and then trims them from the log. ``read_all`` reads the
archived entries and then the live ones in order, so a reader never needs to
know where an entry lives; ``ArchivedHistory`` lets the event store find the
events archive runs trimmed, in the archive their record names
(service/store/archive_record.py).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from service.store import segments
from service.store.archive_record import coverage_problem, locate
from service.store.boundary import translate_redis_errors
from service.store.eventstore import (
    StoredEvent,
    as_text,
    decode_entry,
    parse_position,
)
from service.store.keys import Keyspace
from service.store.segments import ArchiveError

PAGE = 1000
MAX_SWITCHES = 100
MAX_PAGES = 1 << 40

Entry = tuple[str, dict[str, str]]


def archived_entries(directory: Path, partition: int, after: str = "0-0") -> Iterator[Entry]:
    """(id, stored fields) of a partition's committed archive entries after ``after``."""
    start = parse_position(after)
    for manifest in segments.manifests(directory, partition):
        if parse_position(manifest.last_id) <= start:
            continue
        for _line, entry_id, fields in segments.iter_lines(directory / manifest.segment):
            if parse_position(entry_id) > start:
                yield entry_id, fields


def archived_by_id(directory: Path, partition: int, ids: list[str]) -> dict[str, StoredEvent]:
    """The archived events with these ids (reading only the segments that hold them)."""
    wanted = {parse_position(i) for i in ids}
    found: dict[str, StoredEvent] = {}
    for manifest in segments.manifests(directory, partition):
        low, high = parse_position(manifest.first_id), parse_position(manifest.last_id)
        if not any(low <= position <= high for position in wanted):
            continue
        for _line, entry_id, fields in segments.iter_lines(directory / manifest.segment):
            if parse_position(entry_id) in wanted:
                found[entry_id] = decode_entry(partition, entry_id, fields)
    return found


def archived_page(
    directory: Path, partition: int, after: str, before: str, count: int
) -> list[StoredEvent]:
    """Up to ``count`` archived events after ``after`` and below ``before``, in log order."""
    limit = parse_position(before)
    out: list[StoredEvent] = []
    for entry_id, fields in archived_entries(directory, partition, after):
        if len(out) >= count or parse_position(entry_id) >= limit:
            break
        out.append(decode_entry(partition, entry_id, fields))
    return out


class ArchivedHistory:
    """For EventStore: the events archive runs trimmed from the log, read from the archive
    each partition's record names (or ``override``, a copy elsewhere).

    Raises ArchiveUnavailable when events the caller needs are archived where they cannot
    be read, so an answer never silently leaves them out.
    """

    def __init__(self, redis: Redis, keys: Keyspace, override: Path | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.override = override

    async def by_id(self, partition: int, ids: list[str]) -> dict[str, StoredEvent]:
        located = await locate(self.redis, self.keys, partition, self.override)
        if located.before is None:
            return {}  # never trimmed: they are not archived (deleted, which verify reports)
        found: dict[str, StoredEvent] = {}
        problem = None
        if located.directory is not None:
            try:
                found = await asyncio.to_thread(archived_by_id, located.directory, partition, ids)
            except (OSError, ArchiveError) as exc:
                problem = str(exc)
        if len(found) == len(set(ids)):
            return found
        problem = problem or await asyncio.to_thread(
            coverage_problem, located.directory, partition, located.before
        )
        absent = next(i for i in ids if i not in found)
        raise located.unavailable(problem or f"it does not hold entry {absent}")

    async def after(self, partition: int, after: str, count: int) -> list[StoredEvent]:
        located = await locate(self.redis, self.keys, partition, self.override)
        if not located.needed_after(after):
            return []
        directory = await located.require(after)
        assert directory is not None and located.before is not None  # require checked both
        return await asyncio.to_thread(
            archived_page, directory, partition, after, located.before, count
        )


def read_archive(directory: Path, partition: int) -> Iterator[StoredEvent]:
    """A partition's archived events in log order (upcast like live ones)."""
    for entry_id, fields in archived_entries(directory, partition):
        yield decode_entry(partition, entry_id, fields)


def _take(entries: Iterator[Entry], n: int) -> list[Entry]:
    return list(itertools.islice(entries, n))


def _archived_beyond(directory: Path, partition: int, position: str) -> bool:
    found = segments.manifests(directory, partition)
    return bool(found) and parse_position(found[-1].last_id) > parse_position(position)


@dataclass
class _Cursor:
    """Where a ``read_all`` stands: the last entry read and its chain hash."""

    partition: int
    archive_dir: Path | None
    position: str
    last_hash: str | None = None
    switched: bool = False

    def passed(self, entry_id: str, fields: dict[str, str]) -> StoredEvent:
        self.position, self.last_hash = entry_id, fields.get("hash", "")
        return decode_entry(self.partition, entry_id, fields)

    async def archived_beyond(self) -> bool:
        if self.archive_dir is None:
            return False
        return await asyncio.to_thread(
            _archived_beyond, self.archive_dir, self.partition, self.position
        )


async def _read_archived(directory: Path, cursor: _Cursor) -> AsyncIterator[StoredEvent]:
    archived = archived_entries(directory, cursor.partition, cursor.position)
    for _ in range(MAX_PAGES):
        batch = await asyncio.to_thread(_take, archived, PAGE)
        for entry_id, fields in batch:
            yield cursor.passed(entry_id, fields)
        if len(batch) < PAGE:
            return


async def _read_live(redis: Redis, keys: Keyspace, cursor: _Cursor) -> AsyncIterator[StoredEvent]:
    """The log after the cursor; stops with ``cursor.switched`` when the entries it needs
    next were archived and trimmed meanwhile (the log no longer chains to the cursor)."""
    cursor.switched = False
    for _ in range(MAX_PAGES):
        start = "-" if cursor.position == "0-0" else f"({cursor.position}"
        page: Any = await redis.xrange(keys.log(cursor.partition), min=start, count=PAGE)
        if not page:
            return
        first = segments.as_str_fields(page[0][1])
        if first.get("prev") != cursor.last_hash and await cursor.archived_beyond():
            cursor.switched = True
            return
        for raw_id, raw_fields in page:
            yield cursor.passed(as_text(raw_id), segments.as_str_fields(raw_fields))


@translate_redis_errors
async def read_all(
    redis: Redis,
    keys: Keyspace,
    partition: int,
    archive_dir: Path | None,
    after: str = "0-0",
) -> AsyncIterator[StoredEvent]:
    """Every event of a partition after ``after``: archived ones, then the live log.

    When an archive run trims entries this reader has not reached yet (the first
    live entry does not chain to the last one read), it goes back to the archive
    for them, so nothing is missed and nothing is read twice.
    """
    cursor = _Cursor(partition, archive_dir, after if after not in ("", "0") else "0-0")
    for _ in range(MAX_SWITCHES):
        if archive_dir is not None:
            async for event in _read_archived(archive_dir, cursor):
                yield event
            if await cursor.archived_beyond():
                continue  # archived while we read: read the new segments first
        async for event in _read_live(redis, keys, cursor):
            yield event
        if not cursor.switched:
            return
    raise ArchiveError(f"partition {partition}: the log kept moving into the archive")
