"""Archive old log entries to segment files, then trim them from the log.

``archive`` moves, per partition, the entries older than a given instant that
every consumer has passed (``archive_limit``) into gzip JSON Lines segments
(``segment_writer``, file format in service/store/segments.py), and trims the log
below them only once the segment is on disk, committed by its manifest and read
back and checked against the manifest and the hash chain:

    write segment -> fsync file, dir -> manifest (tmp, fsync, rename, fsync dir)
    -> re-read and verify -> XTRIM MINID <next id after the segment>, recording
       the directory and that position in cs:{p}:archived (one script)

A crash anywhere leaves every entry in the log, the archive, or both; the next
run discards uncommitted files, re-checks committed segments whose entries are
still in the log, and carries on. Readers of archive plus log are in
service/store/archive_reader.py; they find the archive through the record
(service/store/archive_record.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from service.audit.archive_limit import safe_limit
from service.audit.segment_writer import SegmentSource, verify_segment, write_segment
from service.store import segments
from service.store.archive_record import ArchiveTrim, absolute
from service.store.eventstore import (
    Position,
    as_text,
    following,
    format_position,
    parse_position,
)
from service.store.keys import Keyspace
from service.store.segments import ArchiveError, Manifest

SEGMENT_ENTRIES = 100_000
MAX_SEGMENTS_PER_RUN = 1_000_000

STEPS = (
    "segment-written",
    "segment-synced",
    "manifest-written",
    "verified",
    "before-trim",
    "after-trim",
)
"""The points of one segment's archiving, in order (``on_step`` is called at each)."""


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
    directory = absolute(directory)
    trim = ArchiveTrim(redis, keys)
    for p in range(keys.partitions):
        limit = await safe_limit(redis, keys, p, before_ms)
        report = PartitionArchive(p, format_position(limit.position), limit.reason)
        source = SegmentSource(redis, keys.log(p), p, limit.position, max(1, segment_entries))
        await _PartitionJob(source, directory, report, on_step, trim).run()
        reports.append(report)
    return ArchiveReport(reports, time.perf_counter() - started)


class _PartitionJob:
    """One partition's archive run: recover from an interrupted run, then segment by
    segment write, verify and trim."""

    def __init__(
        self,
        source: SegmentSource,
        directory: Path,
        report: PartitionArchive,
        on_step: Callable[[str], None],
        trim: ArchiveTrim,
    ) -> None:
        self.source = source
        self.trim = trim
        self.redis = source.redis
        self.log = source.log
        self.partition = source.partition
        self.directory = directory
        self.report = report
        self.on_step = on_step

    async def run(self) -> None:
        self._discard_uncommitted()
        committed = await self._committed()
        last_id = committed[-1].last_id if committed else None
        last_hash = committed[-1].last_hash if committed else ""
        if committed:
            await self._check_still_in_log(committed[-1], missing_ok=True)
            await self._trim(min(following(parse_position(committed[-1].last_id)), self.limit))
        for _ in range(MAX_SEGMENTS_PER_RUN):
            manifest = await write_segment(
                self.source, self.directory, last_id, last_hash, self.on_step
            )
            if manifest is None:
                return
            await self._check_still_in_log(manifest)
            self.on_step("verified")
            self._count(manifest)
            last_id, last_hash = manifest.last_id, manifest.last_hash
            self.on_step("before-trim")
            await self._trim(following(parse_position(last_id)))
            self.on_step("after-trim")

    @property
    def limit(self) -> Position:
        return self.source.limit

    def _count(self, manifest: Manifest) -> None:
        self.report.segments += 1
        self.report.entries += manifest.count
        self.report.bytes += manifest.size

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
        live_from = parse_position(as_text(first_live[0][0])) if first_live else None
        prev = ""
        for index, manifest in enumerate(found):
            try:
                verify_segment(self.directory, manifest, prev)
            except ArchiveError:
                if live_from is None or live_from > parse_position(manifest.first_id):
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
        # the trim records where the archive lives and how far the log now begins, so
        # every reader finds the trimmed entries without being told
        self.report.trimmed += await self.trim.run(self.partition, below, self.directory)

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
