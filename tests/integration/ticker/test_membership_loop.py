"""A ticker's partition loop outlives an error reply (a cluster that is down answers
CLUSTERDOWN, one moving slots MOVED/TRYAGAIN): it keeps its lease and tries again."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from service.store.keys import Keyspace
from service.ticker.ticker import Ticker

TTL_MS = 600


async def test_a_partition_loop_keeps_its_lease_through_error_replies(
    redis: Redis, keys: Keyspace
) -> None:
    await redis.set(keys.due(0), "not a sorted set")  # every due read answers WRONGTYPE
    ticker = Ticker(redis, keys, lease_ttl_ms=TTL_MS, owner="t")
    stop = asyncio.Event()
    task = asyncio.create_task(ticker.run(stop))
    try:
        deadline = time.monotonic() + 3 * TTL_MS / 1000
        while time.monotonic() < deadline:  # three TTLs of failing ticks
            await asyncio.sleep(0.05)
            assert not task.done()
        assert ticker.held() == [0]  # renewed all along by the loop that kept trying
        assert await redis.get(keys.lease(0)) == b"t"
    finally:
        stop.set()
        await task
    assert await redis.get(keys.lease(0)) is None


async def test_a_partition_loop_outlives_an_unexpected_exception(
    redis: Redis, keys: Keyspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticker = Ticker(redis, keys, lease_ttl_ms=TTL_MS, owner="t")
    real_read = ticker.due.read
    calls = 0

    async def flaky(partition: int) -> Any:
        nonlocal calls
        calls += 1
        if calls <= 3:  # as redis-py's cluster client once did after a node restart
            raise AttributeError("'NoneType' object has no attribute 'writelines'")
        return await real_read(partition)

    monkeypatch.setattr(ticker.due, "read", flaky)
    stop = asyncio.Event()
    task = asyncio.create_task(ticker.run(stop))
    try:
        deadline = time.monotonic() + 5
        while calls <= 5:
            assert time.monotonic() < deadline and not task.done(), calls
            await asyncio.sleep(0.02)
        assert ticker.held() == [0]
    finally:
        stop.set()
        await task
