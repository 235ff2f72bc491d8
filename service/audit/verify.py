"""Check the hash chain of every partition: archive segments in order, then the live log.

Each entry must carry the hash of the one before it (``prev``) and its own hash
of its content (``hash``, see service/store/chain.py), and the chain head kept in
Redis must be the hash of the newest entry. The first entry that fails says what
happened there:

- ``altered``: its hash does not match its content;
- ``missing or out of order``: its ``prev`` is not the hash of the entry before it
  (an entry was deleted, moved, or the history before it is elsewhere);
- ``missing at the end``: the chain head is not the newest entry's hash.

A partition whose log was trimmed into an archive that cannot be read (moved,
deleted, another machine) is neither intact nor broken: it is reported as not
checked, with where the archive was recorded.

Memory stays bounded: segments are read line by line and the log page by page.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from service.store import segments
from service.store.archive_record import ArchiveUnavailable, locate, unreadable
from service.store.chain import chain_hash
from service.store.eventstore import as_text, parse_position
from service.store.keys import Keyspace
from service.store.segments import ArchiveError, Manifest

ALTERED = "altered"
MISSING = "missing or out of order"
MISSING_AT_END = "missing at the end"
PAGE = 1000
MAX_PAGES = 1 << 40
HEAD_ROUNDS = 100
"""How often the live walk goes on after entries appended while it read (a busy log)."""
LIVE = "live log"


@dataclass(frozen=True)
class ChainBreak:
    partition: int
    position: str
    where: str
    reason: str
    detail: str

    def __str__(self) -> str:
        return (
            f"partition {self.partition}: chain broken at {self.position} ({self.where}): "
            f"{self.reason}: {self.detail}"
        )


@dataclass
class PartitionChain:
    partition: int
    archived: int = 0
    segments: int = 0
    live: int = 0
    head: str = ""

    @property
    def entries(self) -> int:
        return self.archived + self.live


@dataclass
class VerifyReport:
    partitions: list[PartitionChain] = field(default_factory=list)
    breaks: list[ChainBreak] = field(default_factory=list)
    unreadable: list[ArchiveUnavailable] = field(default_factory=list)
    """Partitions not checked: their log was trimmed into an archive that cannot be read."""
    seconds: float = 0.0

    @property
    def intact(self) -> bool:
        return not self.breaks and not self.unreadable

    @property
    def entries(self) -> int:
        return sum(p.entries for p in self.partitions)

    @property
    def first_break(self) -> ChainBreak | None:
        return self.breaks[0] if self.breaks else None


class _Broken(Exception):
    def __init__(self, found: ChainBreak) -> None:
        super().__init__(str(found))
        self.found = found


class _Walker:
    """Follows one partition's chain entry by entry."""

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.prev = ""
        self.position = (0, 0)
        self.last_id = ""

    def step(self, entry_id: str, fields: dict[str, str], where: str) -> None:
        def broken(reason: str, detail: str) -> _Broken:
            return _Broken(ChainBreak(self.partition, entry_id, where, reason, detail))

        position = parse_position(entry_id)
        if position <= self.position:
            raise broken(MISSING, f"its id does not follow the previous entry {self.last_id}")
        if fields.get("prev", "") != self.prev:
            if not self.last_id:
                detail = "the history before it is not here (archived elsewhere? pass --archive)"
            else:
                detail = f"prev is not the hash of the entry before it ({self.last_id})"
            raise broken(MISSING, detail)
        if fields.get("hash") != chain_hash(fields):
            raise broken(ALTERED, "its hash does not match its content")
        self.prev, self.position, self.last_id = fields["hash"], position, entry_id


def _walk_segment(walker: _Walker, directory: Path, manifest: Manifest) -> int:
    path = directory / manifest.segment
    count = 0
    for line, entry_id, fields in segments.iter_lines(path):
        walker.step(entry_id, fields, f"archive {manifest.segment} line {line}")
        count += 1
    problem = ""
    if segments.file_sha256(path) != manifest.sha256:
        problem = "the segment's sha256 differs from its manifest"
    elif (count, walker.last_id, walker.prev) != (
        manifest.count,
        manifest.last_id,
        manifest.last_hash,
    ):
        problem = "the segment's count, range or last hash differs from its manifest"
    if problem:
        where = f"archive {manifest.segment}"
        raise _Broken(ChainBreak(walker.partition, walker.last_id, where, ALTERED, problem))
    return count


def _walk_archive(walker: _Walker, directory: Path, report: PartitionChain) -> None:
    for manifest in segments.manifests(directory, walker.partition):
        if not (directory / manifest.segment).is_file():
            where = f"archive {manifest.segment}"
            detail = "the segment named by its manifest is missing"
            raise _Broken(ChainBreak(walker.partition, manifest.first_id, where, MISSING, detail))
        report.archived += _walk_segment(walker, directory, manifest)
        report.segments += 1


async def _walk_live(redis: Redis, keys: Keyspace, walker: _Walker, report: PartitionChain) -> None:
    # an append moves the head with its entry (one script): a head read after the walk
    # that is not the last entry walked means entries came since, unless none did
    for _ in range(HEAD_ROUNDS):
        walked = await _walk_pages(redis, keys.log(walker.partition), walker)
        report.live += walked
        stored = await redis.get(keys.chain(walker.partition))
        head = as_text(stored) if stored is not None else ""
        if head == walker.prev or not await _appended_since(redis, keys, walker):
            break
    if head != walker.prev:
        detail = (
            "the chain head is not the newest entry's hash: entries after it were removed"
            if head
            else "the chain head is missing"
        )
        where = f"after {walker.last_id or 'the start'}"
        found = ChainBreak(walker.partition, walker.last_id or "-", where, MISSING_AT_END, detail)
        raise _Broken(found)
    report.head = head


async def _walk_pages(redis: Redis, log: str, walker: _Walker) -> int:
    """Step the walker over the live entries after its last one; how many there were."""
    start, walked = (f"({walker.last_id}" if walker.last_id else "-"), 0
    for _ in range(MAX_PAGES):
        page: Any = await redis.xrange(log, min=start, count=PAGE)
        for raw_id, raw_fields in page:
            walker.step(as_text(raw_id), segments.as_str_fields(raw_fields), LIVE)
        walked += len(page)
        if len(page) < PAGE:
            break
        start = f"({walker.last_id}"
    return walked


async def _appended_since(redis: Redis, keys: Keyspace, walker: _Walker) -> bool:
    start = f"({walker.last_id}" if walker.last_id else "-"
    return bool(await redis.xrange(keys.log(walker.partition), min=start, count=1))


async def _archive_to_walk(
    redis: Redis, keys: Keyspace, partition: int, archive_dir: Path | None
) -> Path | None:
    """The partition's archive (``archive_dir``, else the recorded one); raises
    ArchiveUnavailable when the log was trimmed and that archive is not there at all.
    An archive that is there but incomplete is walked: the walk names the gap."""
    located = await locate(redis, keys, partition, archive_dir)
    if located.before is not None:
        problem = await asyncio.to_thread(unreadable, located.directory, partition)
        if problem is not None:
            raise located.unavailable(problem)
    return located.directory


async def _verify_partition(
    redis: Redis, keys: Keyspace, p: int, archive_dir: Path | None, report: VerifyReport
) -> None:
    walker = _Walker(p)
    chain = PartitionChain(p)
    report.partitions.append(chain)
    try:
        directory = await _archive_to_walk(redis, keys, p, archive_dir)
        if directory is not None:
            await asyncio.to_thread(_walk_archive, walker, directory, chain)
        await _walk_live(redis, keys, walker, chain)
    except ArchiveUnavailable as exc:
        report.unreadable.append(exc)
    except _Broken as exc:
        report.breaks.append(exc.found)
    except ArchiveError as exc:
        report.breaks.append(ChainBreak(p, walker.last_id or "-", "archive", ALTERED, str(exc)))


async def verify(redis: Redis, keys: Keyspace, archive_dir: Path | None = None) -> VerifyReport:
    """Walk each partition's archive segments (in order) then its live log; report the
    counts and head per partition, the first break of each broken partition, and the
    partitions whose archive cannot be read (not checked: neither intact nor broken).

    The archive is ``archive_dir`` when given, else the one each partition's archive
    record names (service/store/archive_record.py).
    """
    started = time.perf_counter()
    report = VerifyReport()
    for p in range(keys.partitions):
        await _verify_partition(redis, keys, p, archive_dir, report)
    report.seconds = time.perf_counter() - started
    return report


def verify_archive_only(directory: Path, partition: int) -> Iterator[ChainBreak]:
    """The first break of one partition's archive alone (no Redis), if any."""
    walker = _Walker(partition)
    try:
        _walk_archive(walker, directory, PartitionChain(partition))
    except _Broken as exc:
        yield exc.found
    except ArchiveError as exc:
        yield ChainBreak(partition, walker.last_id or "-", "archive", ALTERED, str(exc))


def summary(report: VerifyReport) -> str:
    """A human summary, one line per partition and a last line with the verdict."""
    lines = []
    broken = {b.partition: b for b in report.breaks}
    missing = {u.partition: u for u in report.unreadable}
    for chain in report.partitions:
        found = broken.get(chain.partition)
        if found is not None:
            lines.append(str(found))
        elif chain.partition in missing:
            lines.append(f"partition {chain.partition}: not checked: {missing[chain.partition]}")
        else:
            lines.append(
                f"partition {chain.partition}: intact, {chain.entries} entries "
                f"({chain.archived} archived in {chain.segments} segment(s), "
                f"{chain.live} live), head {chain.head or '(empty)'}"
            )
    lines.append(
        f"{verdict(report)}: {report.entries} entries checked in "
        f"{len(report.partitions)} partition(s) in {report.seconds:.2f}s"
    )
    return "\n".join(lines)


def verdict(report: VerifyReport) -> str:
    if report.breaks:
        return "chain BROKEN"
    if report.unreadable:
        where = ", ".join(str(u.partition) for u in report.unreadable)
        return f"archive MISSING (partition {where} not checked)"
    return "chain intact"
