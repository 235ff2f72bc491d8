"""Every script that appends extends the partition's hash chain."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.clock import FixedClock
from service.store.chain import entry_hash
from service.store.keys import Keyspace
from tests.integration.ticker.helpers import MINUTE, leader, setup


async def test_commands_fires_and_runs_extend_one_chain(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, target="http")
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    clock.advance(MINUTE)
    await ticker.tick(0)  # fire.lua
    r = await api.post("/v1/schedules/s/trigger", json={})  # skipped or fired
    assert r.status in (200, 201)
    from service.store.runs import RunStore

    [run] = [m.decode() for m in await redis.smembers(keys.running(0, "s"))]
    await RunStore(redis, keys).finish(
        0, "s", "schedule", run, outcome="succeeded", meta={}, now_ms=clock.now_ms()
    )  # runs.lua
    entries = await redis.xrange(keys.log(0))
    types = {f[b"type"] for _, f in entries}
    assert {b"WorkflowCreated", b"ScheduleFired", b"RunSucceeded"} <= types
    prev = b""
    for _eid, fields in entries:
        assert fields[b"prev"] == prev
        expected = entry_hash(
            prev, fields[b"type"], fields[b"v"], fields[b"sid"], fields[b"data"], fields[b"meta"]
        )
        assert fields[b"hash"].decode() == expected
        prev = fields[b"hash"]
    assert await redis.get(keys.chain(0)) == prev
