"""Where the archive lives, recorded beside each partition's log, and finding it again.

``cronstream archive`` trims a partition's log with ``archive_trim.lua``, which in
the same step records in ``cs:{p}:archived`` the archive directory, the host it
ran on and the position below which the log holds nothing (``before``). Every
reader of history (the API, ``audit``, ``replay``, ``verify``) finds the archive
there, so none needs a flag; ``CRONSTREAM_ARCHIVE_DIR`` or ``--archive`` still
override it (a copy elsewhere).

A reader that needs events below ``before`` and cannot read them raises
``ArchiveUnavailable``, which says where they are: never an answer that leaves
them out. A log trimmed without a record (an archive run of an older version)
is recognised by its first entry, which does not start the hash chain.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from service.errors import CronstreamError
from service.store import segments
from service.store.boundary import translate_redis_errors
from service.store.eventstore import Position, as_text, following, format_position, parse_position
from service.store.keys import Keyspace
from service.store.scripts import load_script
from service.store.segments import ArchiveError

NOT_RECORDED = "where it lives is not recorded"


class ArchiveUnavailable(CronstreamError, RuntimeError):
    """Events a reader needs were archived and trimmed from the log, and the archive
    cannot be read here (moved, deleted, on another machine, or never recorded)."""

    def __init__(
        self, partition: int, before: str, directory: Path | None, reason: str, host: str = ""
    ) -> None:
        self.partition = partition
        self.before = before
        self.directory = directory
        self.reason = reason
        where = f"events of partition {partition} before position {before}"
        if directory is None:
            message = (
                f"{where} were archived and trimmed from the log, and {NOT_RECORDED}: "
                "set CRONSTREAM_ARCHIVE_DIR (or pass --archive) to the archive directory"
            )
        else:
            elsewhere = f" (it was written on {host})" if host and host != _host() else ""
            message = (
                f"{where} are archived at {directory}, which cannot be read{elsewhere}: "
                f"{reason}; put the archive back there, or point CRONSTREAM_ARCHIVE_DIR "
                "(or --archive) at a copy"
            )
        super().__init__(message)


@dataclass(frozen=True)
class ArchiveRecord:
    """What ``cs:{p}:archived`` holds."""

    directory: Path
    host: str
    before: str
    at: int


def absolute(directory: Path) -> Path:
    """``directory`` from the root: recorded so that readers in any working directory find it."""
    return Path(os.path.abspath(directory))


def _host() -> str:
    return socket.gethostname()


def _record(raw: dict[Any, Any]) -> ArchiveRecord | None:
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    if not fields.get("dir") or not fields.get("before"):
        return None
    return ArchiveRecord(
        Path(fields["dir"]), fields.get("host", ""), fields["before"], int(fields.get("at") or 0)
    )


class ArchiveTrim:
    """Adapter of ``archive_trim.lua``: trim below a position and record the archive."""

    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.keys = keys
        self._script = load_script(redis, "service.store", "archive_trim.lua")

    @translate_redis_errors
    async def run(self, partition: int, below: Position, directory: Path) -> int:
        """Trim the log below ``below``; returns how many entries went."""
        removed = await self._script(
            keys=[self.keys.log(partition), self.keys.archived(partition)],
            args=[format_position(below), str(absolute(directory)), _host()],
        )
        return int(removed)


@translate_redis_errors
async def read_record(redis: Redis, keys: Keyspace, partition: int) -> ArchiveRecord | None:
    return _record(await redis.hgetall(keys.archived(partition)))


async def recorded_directory(redis: Redis, keys: Keyspace) -> Path | None:
    """The directory the latest archive run recorded, over every partition."""
    found = [await read_record(redis, keys, p) for p in range(keys.partitions)]
    latest = max((r for r in found if r is not None), key=lambda r: r.at, default=None)
    return latest.directory if latest is not None else None


@dataclass(frozen=True)
class Located:
    """A partition's archive as a reader sees it."""

    partition: int
    directory: Path | None
    """The archive to read: the override if given, else the recorded one."""
    before: str | None
    """The log holds nothing below this position (None: it was never trimmed)."""
    host: str = ""

    def needed_after(self, after: str) -> bool:
        """Whether reading after ``after`` needs archived events."""
        if self.before is None:
            return False
        start = parse_position(after if after not in ("", "0") else "0-0")
        return following(start) < parse_position(self.before)

    def unavailable(self, reason: str) -> ArchiveUnavailable:
        directory = self.directory if reason != NOT_RECORDED else None
        return ArchiveUnavailable(self.partition, self.before or "?", directory, reason, self.host)

    async def require(self, after: str = "0-0") -> Path | None:
        """The directory to read; raises ArchiveUnavailable when the events after ``after``
        include archived ones this archive cannot give."""
        if self.needed_after(after):
            assert self.before is not None
            problem = await asyncio.to_thread(
                coverage_problem, self.directory, self.partition, self.before
            )
            if problem is not None:
                raise self.unavailable(problem)
        return self.directory


@translate_redis_errors
async def locate(
    redis: Redis, keys: Keyspace, partition: int, override: Path | None = None
) -> Located:
    """Where a partition's archive is and below which position the log was trimmed."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.archived(partition))
        pipe.xrange(keys.log(partition), count=1)
        raw, first = await pipe.execute()
    record = _record(raw)
    if record is not None:
        return Located(partition, override or record.directory, record.before, record.host)
    return Located(partition, override, await _untracked_trim(redis, keys, partition, first))


async def _untracked_trim(redis: Redis, keys: Keyspace, partition: int, first: Any) -> str | None:
    """Where a log trimmed with no record now begins (None when it starts the chain)."""
    if first:
        prev = segments.as_str_fields(first[0][1]).get("prev", "")
        return as_text(first[0][0]) if prev else None
    if not await redis.get(keys.chain(partition)):
        return None  # nothing was ever appended
    try:
        info: Any = await redis.xinfo_stream(keys.log(partition))
    except ResponseError:
        return None
    return format_position(following(parse_position(as_text(info["last-generated-id"]))))


def unreadable(directory: Path | None, partition: int) -> str | None:
    """Why ``directory`` cannot serve a partition's archived events at all (None: it can)."""
    if directory is None:
        return NOT_RECORDED
    try:
        if not directory.exists():
            return "no such directory"
        if not directory.is_dir():
            return "not a directory"
        found = segments.manifests(directory, partition)
    except (OSError, ArchiveError) as exc:
        return str(exc)
    return None if found else f"it holds no segments of partition {partition}"


def coverage_problem(directory: Path | None, partition: int, before: str) -> str | None:
    """Why ``directory`` cannot serve every archived event below ``before`` (None: it can)."""
    problem = unreadable(directory, partition)
    if problem is not None or directory is None:
        return problem
    try:
        last = segments.manifests(directory, partition)[-1].last_id
    except (OSError, ArchiveError) as exc:
        return str(exc)
    if following(parse_position(last)) < parse_position(before):
        return f"its segments of partition {partition} end at {last}"
    return None
