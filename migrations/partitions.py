"""The keyspace's partition count: recorded at creation, checked at every start.

An aggregate lives in partition ``crc32(id) % P`` (service/store/keys.py), so a
process configured with another ``P`` than the data was written with would look
for schedules where they are not and write new ones where nobody reads them. The
count is recorded in ``cs:meta`` field ``partitions`` when the keyspace is created,
and a process whose ``CRONSTREAM_PARTITIONS`` differs refuses to start. Changing it
is ``cronstream migrate --partitions N``, offline (migrations/repartition.py).

A keyspace created before the count was recorded gets it recorded on the first
start, after a check that its logs agree: no log beyond the configured count, and
the first events of each log belong to that partition under the configured count.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from service.errors import CronstreamError
from service.store.eventstore import as_text
from service.store.keys import Keyspace

FIELD = "partitions"
PROGRESS = "repartition"  # set while a re-partition runs (migrations/repartition.py)
SAMPLE = 20  # events per log whose placement is checked on a keyspace without a count
SCAN_COUNT = 1000
SCAN_BOUND = 10_000_000


class PartitionCountMismatch(CronstreamError, RuntimeError):
    """The keyspace was written with another partition count than this process has."""

    def __init__(self, found: int | None, configured: int, detail: str = "") -> None:
        self.found = found
        self.configured = configured
        has = f"has {found} partition(s)" if found is not None else "was written with another"
        super().__init__(
            f"the keyspace {has} but CRONSTREAM_PARTITIONS is {configured}{detail}: set "
            "CRONSTREAM_PARTITIONS to the keyspace's count, or stop every cronstream process "
            f"and run `cronstream migrate --partitions {configured}` to re-partition it"
        )


async def recorded_partitions(redis: Redis, keys: Keyspace) -> int | None:
    raw = await redis.hget(keys.meta, FIELD)
    return None if raw is None else int(raw)


class RepartitionUnfinished(CronstreamError, RuntimeError):
    """A re-partition stopped half way: the keyspace is in neither layout."""

    def __init__(self, progress: bytes | str) -> None:
        state = orjson.loads(progress)
        super().__init__(
            f"a re-partition from {state['from']} to {state['to']} partitions stopped in its "
            f"{state['phase']} phase: run `cronstream migrate --partitions {state['to']}` "
            "to finish it before starting cronstream"
        )


async def check_partitions(redis: Redis, keys: Keyspace) -> int:
    """Record the count on a keyspace that has none; refuse one that differs, or one that
    a re-partition left half way."""
    progress = await redis.hget(keys.meta, PROGRESS)
    if progress is not None:
        raise RepartitionUnfinished(progress)
    found = await recorded_partitions(redis, keys)
    if found is None:
        found = await _inferred(redis, keys)
        if found == keys.partitions:
            await redis.hsetnx(keys.meta, FIELD, found)
            found = await recorded_partitions(redis, keys) or found
    if found != keys.partitions:
        raise PartitionCountMismatch(found, keys.partitions)
    return found


async def _inferred(redis: Redis, keys: Keyspace) -> int:
    """The count an unrecorded keyspace was written with, as far as its logs tell: the
    configured one unless a log lies beyond it or holds another partition's events."""
    highest = await highest_log(redis, keys.prefix)
    if highest >= keys.partitions:
        return highest + 1
    for p in range(keys.partitions):
        entries: Any = await redis.xrange(keys.log(p), count=SAMPLE)
        for _eid, fields in entries:
            sid = as_text(fields.get(b"sid", b""))
            if sid and keys.partition_of(sid) != p:
                detail = f" ({sid!r} is in partition {p}, not {keys.partition_of(sid)})"
                raise PartitionCountMismatch(None, keys.partitions, detail)
    return keys.partitions


async def highest_log(redis: Redis, prefix: str) -> int:
    """The highest partition number that has a log (-1 for none), by a SCAN of the logs."""
    pattern = f"{prefix}:{{*}}:log".replace("[", "\\[")
    highest, cursor = -1, 0
    for _ in range(SCAN_BOUND):
        cursor, found = await redis.scan(cursor, match=pattern, count=SCAN_COUNT)
        for name in found:
            tag = as_text(name)[len(prefix) + 2 :].split("}", 1)[0]
            if tag.isdigit():
                highest = max(highest, int(tag))
        if int(cursor) == 0:
            break
    return highest
