"""Writing one archive segment from the log, and checking a segment against its manifest.

A segment is copied page by page from the log, each entry checked to continue the
chain of the one before it, then closed, fsynced and committed by its manifest
(see service/store/segments.py), and read back and checked before anything is
trimmed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from service.domain.timeutil import to_rfc3339
from service.store import segments
from service.store.chain import chain_hash
from service.store.eventstore import Position, as_text, format_position
from service.store.segments import ArchiveError, Manifest

PAGE = 1000
GZIP_LEVEL = 5


@dataclass
class _Copied:
    """The entries copied into a segment so far, and the chain at both ends."""

    first_id: str
    first_prev: str
    last_id: str
    last_hash: str
    count: int = 0


@dataclass(frozen=True)
class SegmentSource:
    """Where a segment's entries come from: a partition's log, below a limit."""

    redis: Redis
    log: str
    partition: int
    limit: Position
    segment_entries: int

    async def page(self, start: str, room: int) -> Any:
        end = f"({format_position(self.limit)}"
        return await self.redis.xrange(self.log, min=start, max=end, count=min(PAGE, room))


async def write_segment(
    source: SegmentSource,
    directory: Path,
    after: str | None,
    prev: str,
    on_step: Callable[[str], None],
) -> Manifest | None:
    """Archive the entries after ``after`` (a run of at most ``segment_entries``) into a
    committed, checked segment; None when there are none below the limit."""
    if source.limit <= (0, 1):
        return None
    page = await source.page("-" if after is None else f"({after}", source.segment_entries)
    if not page:
        return None
    first_id = as_text(page[0][0])
    path = segments.segment_path(directory, source.partition, first_id)
    copied = _Copied(first_id, prev, first_id, prev)
    writer = segments.SegmentWriter(path, GZIP_LEVEL)
    try:
        await _copy(source, page, writer, copied)
    except BaseException:
        writer.abort()
        raise
    writer.finish()
    on_step("segment-written")
    writer.sync()
    on_step("segment-synced")
    manifest = _manifest(source.partition, path, copied)
    segments.write_manifest(directory, manifest)
    on_step("manifest-written")
    verify_segment(directory, manifest, prev)
    return manifest


async def _copy(
    source: SegmentSource, page: Any, writer: segments.SegmentWriter, copied: _Copied
) -> None:
    while page:
        lines = []
        for raw_id, raw_fields in page:
            entry_id, fields = as_text(raw_id), segments.as_str_fields(raw_fields)
            copied.last_hash = check_link(source.partition, entry_id, fields, copied.last_hash)
            lines.append(segments.encode_line(entry_id, fields))
            copied.last_id = entry_id
        writer.write(lines)
        copied.count += len(page)
        room = source.segment_entries - copied.count
        if room <= 0:
            return
        page = await source.page(f"({copied.last_id}", room)


def _manifest(partition: int, path: Path, copied: _Copied) -> Manifest:
    return Manifest(
        partition=partition,
        first_id=copied.first_id,
        last_id=copied.last_id,
        count=copied.count,
        first_prev=copied.first_prev,
        last_hash=copied.last_hash,
        segment=path.name,
        sha256=segments.file_sha256(path),
        size=path.stat().st_size,
        created_at=to_rfc3339(int(time.time() * 1000)),
    )


def check_link(partition: int, entry_id: str, fields: dict[str, str], prev: str) -> str:
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
        prev = check_link(manifest.partition, entry_id, fields, prev)
        first, last, count = first or entry_id, entry_id, count + 1
    if (count, first, last, prev) != (
        manifest.count,
        manifest.first_id,
        manifest.last_id,
        manifest.last_hash,
    ):
        raise ArchiveError(f"{manifest.segment}: range, count or hash differs from its manifest")
