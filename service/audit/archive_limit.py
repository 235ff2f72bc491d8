"""How far the log may be archived and trimmed: below what every reader has passed.

The bound is the lowest of the ``--before`` instant, every projection's checkpoint,
and, for every consumer group on the log, its last delivered id and its oldest
pending entry, so no reader ever finds an entry it still needs trimmed away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from service.domain.timeutil import to_rfc3339
from service.store.eventstore import Position, as_text, following, parse_position
from service.store.keys import Keyspace


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
    limit = await _projections_limit(redis, keys, partition, limit)
    return await _groups_limit(redis, keys, partition, limit)


async def _projections_limit(redis: Redis, keys: Keyspace, partition: int, limit: Limit) -> Limit:
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
            limit = limit.lower(
                following(parse_position(position)), f"projection {name} at {position}"
            )
    if not seen_views:
        limit = limit.lower((0, 0), "the views projection has not started")
    return limit


async def _groups_limit(redis: Redis, keys: Keyspace, partition: int, limit: Limit) -> Limit:
    try:
        groups: Any = await redis.xinfo_groups(keys.log(partition))
    except ResponseError:
        groups = []  # no log stream yet
    for group in groups:
        name = as_text(group["name"])
        delivered = as_text(group["last-delivered-id"])
        limit = limit.lower(
            following(parse_position(delivered)), f"consumer group {name} at {delivered}"
        )
        if int(group["pending"]):
            summary: Any = await redis.xpending(keys.log(partition), name)
            oldest = as_text(summary["min"])
            limit = limit.lower(parse_position(oldest), f"consumer group {name} pending {oldest}")
    return limit
