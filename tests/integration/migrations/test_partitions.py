"""The partition count: recorded at creation, a process with another count refused."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from migrations.keyspace import check_keyspace
from migrations.partitions import PartitionCountMismatch, recorded_partitions
from service.store.keys import Keyspace


def event(sid: str) -> dict[str, str]:
    return {"type": "X", "v": "1", "sid": sid, "data": "{}", "meta": "{}"}


def ids_in(keys: Keyspace, p: int, n: int) -> list[str]:
    return [s for s in (f"s{i}" for i in range(200)) if keys.partition_of(s) == p][:n]


async def test_a_fresh_keyspace_records_its_count_and_refuses_another(redis: Redis) -> None:
    four = Keyspace("pc", 4)
    await check_keyspace(redis, four)
    assert await recorded_partitions(redis, four) == 4
    await check_keyspace(redis, four)  # and again
    with pytest.raises(PartitionCountMismatch) as refused:
        await check_keyspace(redis, Keyspace("pc", 2))
    message = str(refused.value)
    assert "has 4 partition(s) but CRONSTREAM_PARTITIONS is 2" in message
    assert "`cronstream migrate --partitions 2`" in message
    assert await recorded_partitions(redis, four) == 4  # refusing changes nothing


async def test_a_keyspace_without_a_count_gets_it_when_its_logs_agree(redis: Redis) -> None:
    two = Keyspace("pc", 2)
    await redis.hset(two.meta, "version", 2)
    for p in range(2):
        for sid in ids_in(two, p, 3):
            await redis.xadd(two.log(p), event(sid))  # type: ignore[arg-type]
    with pytest.raises(PartitionCountMismatch, match="has 2 partition"):
        await check_keyspace(redis, Keyspace("pc", 1))  # a log beyond partition 0
    assert await recorded_partitions(redis, two) is None
    await check_keyspace(redis, two)
    assert await recorded_partitions(redis, two) == 2


async def test_a_keyspace_without_a_count_whose_events_are_elsewhere_is_refused(
    redis: Redis,
) -> None:
    four, eight = Keyspace("pc", 4), Keyspace("pc", 8)
    await redis.hset(four.meta, "version", 2)
    for p in range(4):  # written with 4: read with 8, some events would be misplaced
        for sid in ids_in(four, p, 5):
            await redis.xadd(four.log(p), event(sid))  # type: ignore[arg-type]
    with pytest.raises(PartitionCountMismatch, match="is in partition"):
        await check_keyspace(redis, eight)
    assert await recorded_partitions(redis, four) is None
