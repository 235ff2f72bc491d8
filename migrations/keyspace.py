"""Keyspace versioning: the layout version recorded in Redis, checked at start.

A service refuses to start on a keyspace newer than it knows. A fresh keyspace
is stamped with the current version.
"""

from __future__ import annotations

from redis.asyncio import Redis

from service.errors import KeyspaceVersionError
from service.store.keys import Keyspace

KEYSPACE_VERSION = 1


async def check_keyspace(redis: Redis, keys: Keyspace) -> int:
    """Stamp a fresh keyspace, refuse a newer one; return the version found."""
    await redis.hsetnx(keys.meta, "version", KEYSPACE_VERSION)
    raw = await redis.hget(keys.meta, "version")
    found = int(raw or 0)
    if found > KEYSPACE_VERSION:
        raise KeyspaceVersionError(found, KEYSPACE_VERSION)
    return found
