"""Keyspace v1 -> v2: every schedule's write-model hash carries a ``status`` field.

The ticker's due script and the fire script judge a schedule by the ``status``
field kept beside its snapshot (``active``, ``paused``, ``completed``,
``deleted``), without decoding JSON. Schedules last written before appends kept
that field have only the JSON snapshot: the ticker would treat them as not active
and never fire them. This migration derives the field from the snapshot where it
is missing. It never overwrites a field that is there (HSETNX), so running it
twice, or beside a running writer, is harmless.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from service.store.keys import Keyspace

NAME = "schedule state hashes carry their status"
SCAN_COUNT = 1000
SCAN_BOUND = 10_000_000  # SCAN calls per partition, far above any real keyspace


def status_of(snapshot: dict[str, Any]) -> str:
    """The status field the append script would have written for this snapshot."""
    if snapshot.get("deleted"):
        return "deleted"
    status = snapshot.get("status")
    return status if status in ("active", "paused", "completed") else "active"


async def apply(redis: Redis, keys: Keyspace) -> None:
    for p in range(keys.partitions):
        pattern = keys.state_prefix(p, "schedule").replace("[", "\\[") + "*"
        cursor: Any = 0
        for _ in range(SCAN_BOUND):
            cursor, found = await redis.scan(cursor, match=pattern, count=SCAN_COUNT)
            await _fill(redis, list(found))
            if int(cursor) == 0:
                break


async def _fill(redis: Redis, names: list[Any]) -> None:
    if not names:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(name, ["state", "status"])
        rows: list[Any] = await pipe.execute()
    async with redis.pipeline(transaction=False) as pipe:
        for name, (state, status) in zip(names, rows, strict=True):
            if state is not None and not status:
                pipe.hsetnx(name, "status", status_of(orjson.loads(state)))
        await pipe.execute()
