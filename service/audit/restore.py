"""Disaster recovery: put archived entries back into an empty Redis, then rebuild.

Every archived entry goes back with its original id and fields (so the chain and
every stored position stay valid), the chain head is set, the write model is
rebuilt from the log (``write_model``) and the views are rebuilt by the projector
(``projections.rebuild``). The archive is verified first; a broken archive, a
keyspace that already has a log, or an archive of more partitions than configured
is refused and nothing is written.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from projections.rebuild import RebuildReport, rebuild
from service.audit.verify import ChainBreak, verify_archive_only
from service.audit.write_model import WriteModelReport, rebuild_write_model
from service.store import segments
from service.store.keys import Keyspace

BATCH = 1000
MAX_BATCHES = 1 << 40

__all__ = ["RestoreRefused", "RestoreReport", "rebuild_write_model", "restore"]


class RestoreRefused(RuntimeError):
    """The target keyspace or the archive does not allow a restore (the message says why)."""


@dataclass(frozen=True)
class RestoreReport:
    entries: int
    partitions: int
    bytes_read: int
    load_seconds: float
    write_model: WriteModelReport
    views: RebuildReport

    @property
    def seconds(self) -> float:
        return self.load_seconds + self.write_model.seconds + self.views.seconds


async def check_restorable(redis: Redis, keys: Keyspace, directory: Path) -> list[int]:
    """The archive's partitions, after checking the keyspace is empty and the archive whole."""
    found = await asyncio.to_thread(segments.partitions, directory)
    if not found:
        raise RestoreRefused(f"{directory}: no archive segments (no *.manifest.json)")
    if found[-1] >= keys.partitions:
        raise RestoreRefused(
            f"the archive has partition {found[-1]} but the keyspace has {keys.partitions} "
            "partition(s): set CRONSTREAM_PARTITIONS to the archived value"
        )
    for p in range(keys.partitions):
        if await redis.exists(keys.log(p), keys.chain(p)):
            raise RestoreRefused(
                f"{keys.log(p)} already exists: restore only into an empty Redis "
                "(or another CRONSTREAM_KEY_PREFIX)"
            )
    for p in found:
        broken = await asyncio.to_thread(_first_break, directory, p)
        if broken is not None:
            raise RestoreRefused(f"the archive is broken: {broken}")
    return found


def _first_break(directory: Path, partition: int) -> ChainBreak | None:
    return next(verify_archive_only(directory, partition), None)


def _lines(directory: Path, partition: int) -> Iterator[tuple[str, dict[str, str]]]:
    for manifest in segments.manifests(directory, partition):
        for _line, entry_id, fields in segments.iter_lines(directory / manifest.segment):
            yield entry_id, fields


async def _load_partition(redis: Redis, keys: Keyspace, directory: Path, p: int) -> int:
    lines = _lines(directory, p)
    count, head = 0, ""
    for _ in range(MAX_BATCHES):
        batch = await asyncio.to_thread(lambda: list(itertools.islice(lines, BATCH)))
        if not batch:
            break
        async with redis.pipeline(transaction=False) as pipe:
            for entry_id, fields in batch:
                stored: Any = fields
                pipe.xadd(keys.log(p), stored, id=entry_id)
            await pipe.execute()
        count += len(batch)
        head = batch[-1][1]["hash"]
    await redis.set(keys.chain(p), head)
    return count


async def restore(redis: Redis, keys: Keyspace, directory: Path) -> RestoreReport:
    """Restore an archive into an empty keyspace; rebuild the write model and the views."""
    found = await check_restorable(redis, keys, directory)
    started = time.perf_counter()
    entries = 0
    for p in found:
        entries += await _load_partition(redis, keys, directory, p)
    # every archived entry is back in the log: nothing is trimmed any more
    await redis.delete(*(keys.archived(p) for p in range(keys.partitions)))
    load_seconds = time.perf_counter() - started
    size = sum(m.size for p in found for m in segments.manifests(directory, p))
    write_model = await rebuild_write_model(redis, keys)
    views = await rebuild(redis, keys)
    return RestoreReport(entries, len(found), size, load_seconds, write_model, views)
