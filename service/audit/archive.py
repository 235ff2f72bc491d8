"""Archive old log entries to segment files, trim them, and read archive plus log.

``archive`` moves, per partition, the entries older than a given instant that
every consumer has passed into gzip JSON Lines segments (see ``segments``), and
trims the log below them only once the segment is on disk, committed by its
manifest and read back and checked against the manifest and the hash chain:

    write segment -> fsync file, dir -> manifest (tmp, fsync, rename, fsync dir)
    -> re-read and verify -> XTRIM MINID <next id after the segment>

A crash anywhere leaves every entry in the log, the archive, or both; the next
run discards uncommitted files, re-checks committed segments whose entries are
still in the log, and carries on. ``read_all`` reads archived then live entries
of a partition, in order, so readers never need to know where an entry lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from service.audit import segments
from service.audit.segments import ArchiveError, Manifest
from service.domain.timeutil import to_rfc3339
from service.store.chain import entry_hash
from service.store.eventstore import StoredEvent, as_text, decode_entry, parse_position
from service.store.keys import Keyspace

PAGE = 1000
SEGMENT_ENTRIES = 100_000
MAX_SEGMENTS_PER_RUN = 1_000_000
MAX_SWITCHES = 100
MAX_PAGES = 1 << 40
GZIP_LEVEL = 5

Position = tuple[int, int]

STEPS = (
    "segment-written",
    "segment-synced",
    "manifest-written",
    "verified",
    "before-trim",
    "after-trim",
)
"""The points of one segment's archiving, in order (``on_step`` is called at each)."""


def _next(position: Position) -> Position:
    return position[0], position[1] + 1


def _pos(entry_id: str) -> Position:
    return parse_position(entry_id)


def _id(position: Position) -> str:
    return f"{position[0]}-{position[1]}"


# -- reading ----------------------------------------------------------------------


def archived_entries(
    directory: Path, partition: int, after: str = "0-0"
) -> Iterator[tuple[str, dict[str, str]]]:
    """(id, stored fields) of a partition's committed archive entries after ``after``."""
    start = _pos(after)
    for manifest in segments.manifests(directory, partition):
        if _pos(manifest.last_id) <= start:
            continue
        for _line, entry_id, fields in segments.iter_lines(directory / manifest.segment):
            if _pos(entry_id) > start:
                yield entry_id, fields


def archived_by_id(directory: Path, partition: int, ids: list[str]) -> dict[str, StoredEvent]:
    """The archived events with these ids (reading only the segments that hold them)."""
    wanted = {_pos(i): i for i in ids}
    found: dict[str, StoredEvent] = {}
    for manifest in segments.manifests(directory, partition):
        low, high = _pos(manifest.first_id), _pos(manifest.last_id)
        if not any(low <= position <= high for position in wanted):
            continue
        for _line, entry_id, fields in segments.iter_lines(directory / manifest.segment):
            if _pos(entry_id) in wanted:
                found[entry_id] = decode_entry(partition, entry_id, fields)
    return found


def archive_lookup(
    directory: Path,
) -> Callable[[int, list[str]], Awaitable[dict[str, StoredEvent]]]:
    """For EventStore: find trimmed events of an aggregate's history in the archive."""

    async def lookup(partition: int, ids: list[str]) -> dict[str, StoredEvent]:
        return await asyncio.to_thread(archived_by_id, directory, partition, ids)

    return lookup


def read_archive(directory: Path, partition: int) -> Iterator[StoredEvent]:
    """A partition's archived events in log order (upcast like live ones)."""
    for entry_id, fields in archived_entries(directory, partition):
        yield decode_entry(partition, entry_id, fields)


def _take(
    entries: Iterator[tuple[str, dict[str, str]]], n: int
) -> list[tuple[str, dict[str, str]]]:
    return list(itertools.islice(entries, n))


def _archived_beyond(directory: Path, partition: int, position: str) -> bool:
    found = segments.manifests(directory, partition)
    return bool(found) and _pos(found[-1].last_id) > _pos(position)


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
    position = after if after not in ("", "0") else "0-0"
    last_hash: str | None = None
    for _ in range(MAX_SWITCHES):
        if archive_dir is not None:
            archived = archived_entries(archive_dir, partition, position)
            for _ in range(MAX_PAGES):
                batch = await asyncio.to_thread(_take, archived, PAGE)
                for entry_id, fields in batch:
                    yield decode_entry(partition, entry_id, fields)
                    position, last_hash = entry_id, fields.get("hash", "")
                if len(batch) < PAGE:
                    break
            if await asyncio.to_thread(_archived_beyond, archive_dir, partition, position):
                continue  # archived while we read: read the new segments first
        switched = False
        while True:
            start = "-" if position == "0-0" else f"({position}"
            page: Any = await redis.xrange(keys.log(partition), min=start, count=PAGE)
            if not page:
                return
            first = segments.as_str_fields(page[0][1])
            if (
                archive_dir is not None
                and first.get("prev") != last_hash
                and await asyncio.to_thread(_archived_beyond, archive_dir, partition, position)
            ):
                switched = True
                break
            for raw_id, raw_fields in page:
                fields = segments.as_str_fields(raw_fields)
                yield decode_entry(partition, as_text(raw_id), fields)
                position, last_hash = as_text(raw_id), fields.get("hash", "")
        if not switched:
            return
    raise ArchiveError(f"partition {partition}: the log kept moving into the archive")


# -- what may be archived -----------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """Entries with ids below ``position`` may be archived; ``reason`` names what bound it."""

    position: Position
    reason: str

    def lower(self, position: Position, reason: str) -> Limit:
        return Limit(position, reason) if position < self.position else self


async def safe_limit(redis: Redis, keys: Keyspace, partition: int, before_ms: int) -> Limit:
    """The lowest of: the --before instant, every projection's checkpoint, and for every
    consumer group on the log its last delivered id and its oldest pending entry."""
    limit = Limit((before_ms, 0), f"--before {to_rfc3339(before_ms)}")
    pattern = keys.checkpoint(partition, "*").replace("[", "\\[")
    seen_views = False
    async for raw_key in redis.scan_iter(match=pattern, count=1000):
        key = as_text(raw_key)
        name = key.rsplit(":", 1)[-1]
        seen_views |= key == keys.checkpoint(partition)
        raw = await redis.hget(key, "position")
        position = as_text(raw) if raw else ""
        if not position:
            limit = limit.lower((0, 0), f"projection {name} has applied nothing")
        else:
            limit = limit.lower(_next(_pos(position)), f"projection {name} at {position}")
    if not seen_views:
        limit = limit.lower((0, 0), "the views projection has not started")
    try:
        groups: Any = await redis.xinfo_groups(keys.log(partition))
    except ResponseError:
        groups = []  # no log stream yet
    for group in groups:
        name = as_text(group["name"])
        delivered = as_text(group["last-delivered-id"])
        limit = limit.lower(_next(_pos(delivered)), f"consumer group {name} at {delivered}")
        if int(group["pending"]):
            summary: Any = await redis.xpending(keys.log(partition), name)
            oldest = as_text(summary["min"])
            limit = limit.lower(_pos(oldest), f"consumer group {name} pending {oldest}")
    return limit


# -- writing ------------------------------------------------------------------------


@dataclass
class PartitionArchive:
    partition: int
    limit: str
    reason: str
    segments: int = 0
    entries: int = 0
    bytes: int = 0
    trimmed: int = 0
    discarded: list[str] = field(default_factory=list)


@dataclass
class ArchiveReport:
    partitions: list[PartitionArchive]
    seconds: float

    @property
    def entries(self) -> int:
        return sum(p.entries for p in self.partitions)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions)


def _no_step(_step: str) -> None:
    return None


async def archive(
    redis: Redis,
    keys: Keyspace,
    before_ms: int,
    directory: Path,
    *,
    segment_entries: int = SEGMENT_ENTRIES,
    on_step: Callable[[str], None] = _no_step,
) -> ArchiveReport:
    """Archive and trim, per partition, what every consumer has passed before ``before_ms``.

    Raises ArchiveError when the log does not continue the archive's chain (another
    directory holds the earlier segments, or an entry was altered): nothing is
    trimmed then.
    """
    started = time.perf_counter()
    reports = []
    for p in range(keys.partitions):
        limit = await safe_limit(redis, keys, p, before_ms)
        report = PartitionArchive(p, _id(limit.position), limit.reason)
        job = _PartitionJob(redis, keys, p, directory, report, segment_entries, on_step)
        await job.run(limit.position)
        reports.append(report)
    return ArchiveReport(reports, time.perf_counter() - started)


class _PartitionJob:
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        partition: int,
        directory: Path,
        report: PartitionArchive,
        segment_entries: int,
        on_step: Callable[[str], None],
    ) -> None:
        self.redis = redis
        self.log = keys.log(partition)
        self.partition = partition
        self.directory = directory
        self.report = report
        self.segment_entries = max(1, segment_entries)
        self.on_step = on_step

    async def run(self, limit: Position) -> None:
        self._discard_uncommitted()
        committed = await self._committed()
        last_id = committed[-1].last_id if committed else None
        last_hash = committed[-1].last_hash if committed else ""
        if committed:
            await self._check_still_in_log(committed[-1], missing_ok=True)
            await self._trim(min(_next(_pos(committed[-1].last_id)), limit))
        for _ in range(MAX_SEGMENTS_PER_RUN):
            manifest = await self._write_segment(last_id, last_hash, limit)
            if manifest is None:
                return
            last_id, last_hash = manifest.last_id, manifest.last_hash
            self.on_step("before-trim")
            await self._trim(_next(_pos(last_id)))
            self.on_step("after-trim")

    def _discard_uncommitted(self) -> None:
        stale = segments.uncommitted(self.directory, self.partition)
        for path in stale:
            path.unlink()
            self.report.discarded.append(path.name)
        if stale:
            segments.fsync_dir(self.directory)

    async def _committed(self) -> list[Manifest]:
        """Committed segments, in order; a segment whose entries are all still in the log
        and that does not check out is discarded (with the ones after it) to be rewritten."""
        found = segments.manifests(self.directory, self.partition)
        first_live: Any = await self.redis.xrange(self.log, count=1)
        live_from = _pos(as_text(first_live[0][0])) if first_live else None
        prev = ""
        for index, manifest in enumerate(found):
            try:
                verify_segment(self.directory, manifest, prev)
            except ArchiveError:
                if live_from is None or live_from > _pos(manifest.first_id):
                    raise  # its entries are gone from the log: nothing can replace it
                for bad in found[index:]:
                    self._drop(bad)
                return found[:index]
            prev = manifest.last_hash
        return found

    def _drop(self, manifest: Manifest) -> None:
        path = segments.manifest_path(self.directory, manifest.partition, manifest.first_id)
        for victim in (path, self.directory / manifest.segment):
            with contextlib.suppress(FileNotFoundError):
                victim.unlink()
            self.report.discarded.append(victim.name)
        segments.fsync_dir(self.directory)

    async def _trim(self, below: Position) -> None:
        if below <= (0, 0):
            return
        removed = await self.redis.xtrim(self.log, minid=_id(below), approximate=False)
        self.report.trimmed += int(removed)

    async def _write_segment(
        self, after: str | None, prev: str, limit: Position
    ) -> Manifest | None:
        """Archive the next run of entries below ``limit``; None when there are none."""
        if limit <= (0, 1):
            return None
        end = f"({_id(limit)}"
        start = "-" if after is None else f"({after}"
        page: Any = await self.redis.xrange(
            self.log, min=start, max=end, count=min(PAGE, self.segment_entries)
        )
        if not page:
            return None
        first_id = as_text(page[0][0])
        path = segments.segment_path(self.directory, self.partition, first_id)
        first_prev, count, last_id, last_hash = prev, 0, first_id, prev
        writer = segments.SegmentWriter(path, GZIP_LEVEL)
        try:
            while page:
                lines = []
                for raw_id, raw_fields in page:
                    entry_id, fields = as_text(raw_id), segments.as_str_fields(raw_fields)
                    last_hash = _check_link(self.partition, entry_id, fields, last_hash)
                    lines.append(segments.encode_line(entry_id, fields))
                    last_id = entry_id
                writer.write(lines)
                count += len(page)
                room = self.segment_entries - count
                if room <= 0:
                    break
                page = await self.redis.xrange(
                    self.log, min=f"({last_id}", max=end, count=min(PAGE, room)
                )
        except BaseException:
            writer.abort()
            raise
        writer.finish()
        self.on_step("segment-written")
        writer.sync()
        self.on_step("segment-synced")
        manifest = Manifest(
            partition=self.partition,
            first_id=first_id,
            last_id=last_id,
            count=count,
            first_prev=first_prev,
            last_hash=last_hash,
            segment=path.name,
            sha256=segments.file_sha256(path),
            size=path.stat().st_size,
            created_at=to_rfc3339(int(time.time() * 1000)),
        )
        segments.write_manifest(self.directory, manifest)
        self.on_step("manifest-written")
        verify_segment(self.directory, manifest, first_prev)
        await self._check_still_in_log(manifest)
        self.on_step("verified")
        self.report.segments += 1
        self.report.entries += count
        self.report.bytes += manifest.size
        return manifest

    async def _check_still_in_log(self, manifest: Manifest, missing_ok: bool = False) -> None:
        """The log's entry at the segment's end is the one archived (same hash)."""
        found: Any = await self.redis.xrange(
            self.log, min=manifest.last_id, max=manifest.last_id, count=1
        )
        if not found and missing_ok:
            return  # trimmed already
        stored = segments.as_str_fields(found[0][1]).get("hash") if found else None
        if stored != manifest.last_hash:
            raise ArchiveError(
                f"partition {self.partition}: log entry {manifest.last_id} changed while archiving"
            )


def _check_link(partition: int, entry_id: str, fields: dict[str, str], prev: str) -> str:
    """The entry's hash, after checking it continues ``prev`` and matches its content."""
    if fields.get("prev", "") != prev:
        raise ArchiveError(
            f"partition {partition}: entry {entry_id} does not continue the archived chain "
            "(an entry is missing, or the earlier segments are in another directory); "
            "run `cronstream verify`"
        )
    expected = chain_hash(fields)
    if fields.get("hash") != expected:
        raise ArchiveError(
            f"partition {partition}: entry {entry_id} does not match its hash (altered); "
            "run `cronstream verify`"
        )
    return expected


def chain_hash(fields: dict[str, str]) -> str:
    """The chain hash of an entry, from its stored fields (see service/store/chain.py)."""
    return entry_hash(
        fields.get("prev", "").encode(),
        fields.get("type", "").encode(),
        fields.get("v", "").encode(),
        fields.get("sid", "").encode(),
        fields.get("data", "").encode(),
        fields.get("meta", "").encode(),
    )


def verify_segment(directory: Path, manifest: Manifest, expected_prev: str) -> None:
    """Check a segment against its manifest and the chain; ArchiveError says what is wrong."""
    path = directory / manifest.segment
    if not path.is_file():
        raise ArchiveError(f"{manifest.segment}: missing")
    if segments.file_sha256(path) != manifest.sha256:
        raise ArchiveError(f"{manifest.segment}: sha256 differs from its manifest")
    if manifest.first_prev != expected_prev:
        raise ArchiveError(f"{manifest.segment}: does not continue the previous segment")
    prev, count, first, last = expected_prev, 0, "", ""
    for _line, entry_id, fields in segments.iter_lines(path):
        prev = _check_link(manifest.partition, entry_id, fields, prev)
        first, last, count = first or entry_id, entry_id, count + 1
    if (count, first, last, prev) != (
        manifest.count,
        manifest.first_id,
        manifest.last_id,
        manifest.last_hash,
    ):
        raise ArchiveError(f"{manifest.segment}: range, count or hash differs from its manifest")
