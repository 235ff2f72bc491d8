"""Listing one namespace's schedules from the views' name-sorted indexes."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from projections.read import ScheduleFilter, ViewReader
from service.store.keys import Keyspace


async def fill(redis: Redis, keys: Keyspace, ids: list[str]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for ident in ids:
            p = keys.partition_of(ident)
            record = {"id": ident, "workflow_id": "scan", "status": "active", "tags": []}
            pipe.set(keys.view(p, f"schedule:{ident}"), orjson.dumps(record))
            pipe.zadd(keys.view(p, "schedules"), {ident: 0})
        await pipe.execute()


async def every_page(reader: ViewReader, prefix: str) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        records, cursor = await reader.list_schedules(ScheduleFilter(), cursor, 50, prefix)
        seen += [r["id"] for r in records]
        if cursor is None:
            return seen
    raise AssertionError("the pages did not end")


async def test_many_small_namespaces_before_default_s_ids_do_not_end_its_list(
    redis: Redis, keys: Keyspace
) -> None:
    mine = [f"s{i:04d}" for i in range(120)]
    # more namespaces than one page may step over one by one, each of one id
    theirs = [f"n{t:04d}/a" for t in range(1500)] + [f"s0050x/s{i:03d}" for i in range(300)]
    await fill(redis, keys, mine + theirs)
    reader = ViewReader(redis, keys)
    assert await every_page(reader, "") == mine
    assert await every_page(reader, "s0050x/") == sorted(i for i in theirs if "s0050x" in i)
    assert await every_page(reader, "n0007/") == ["n0007/a"]
    assert await reader.count_schedules("s0050x/") == 300
