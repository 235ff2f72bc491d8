"""A hand-built log with a valid hash chain, and ways to look at a whole keyspace."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from service.store.chain import entry_hash
from service.store.keys import Keyspace

START_MS = 1_700_000_000_000


def entry(prev: str, i: int, sid: str = "s") -> dict[str, str]:
    data = orjson.dumps({"n": i}).decode()
    meta = orjson.dumps({"actor": "test"}).decode()
    fields = {"type": "Noted", "v": "1", "sid": sid, "data": data, "meta": meta, "prev": prev}
    fields["hash"] = entry_hash(
        prev.encode(), b"Noted", b"1", sid.encode(), data.encode(), meta.encode()
    )
    return fields


async def fill_log(
    redis: Redis, keys: Keyspace, count: int, p: int = 0, start_ms: int = START_MS
) -> list[str]:
    """Append ``count`` chained entries with ids ``start_ms + i``-0; return the ids."""
    prev = (await redis.get(keys.chain(p)) or b"").decode()
    ids = []
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(count):
            fields = entry(prev, i)
            eid = f"{start_ms + i}-0"
            pipe.xadd(keys.log(p), fields, id=eid)  # type: ignore[arg-type]
            ids.append(eid)
            prev = fields["hash"]
        pipe.set(keys.chain(p), prev)
        await pipe.execute()
    return ids


async def set_checkpoint(redis: Redis, keys: Keyspace, position: str, p: int = 0) -> None:
    await redis.hset(keys.checkpoint(p), "position", position)


async def log_ids(redis: Redis, keys: Keyspace, p: int = 0) -> list[str]:
    return [eid.decode() for eid, _ in await redis.xrange(keys.log(p))]


async def dump(redis: Redis, pattern: str) -> dict[str, Any]:
    """Every key matching ``pattern`` with its content, by type (for comparisons)."""
    out: dict[str, Any] = {}
    async for raw in redis.scan_iter(match=pattern, count=1000):
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            out[key] = await redis.hgetall(key)
        elif kind == "zset":
            out[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            out[key] = await redis.lrange(key, 0, -1)
        elif kind == "set":
            out[key] = sorted(await redis.smembers(key))
        elif kind == "string":
            out[key] = await redis.get(key)
        else:
            out[key] = kind
    return out
