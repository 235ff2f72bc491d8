"""Shadow rebuild: build beside the live views, diff, switch atomically or drop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from projections.rebuild import rebuild, shadow_rebuild
from service.clock import FixedClock
from service.store.keys import Keyspace
from tests.integration.ticker.helpers import MINUTE, leader, setup

DEADLINE_S = 10.0


async def views(redis: Redis, keys: Keyspace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async for raw in redis.scan_iter(match="cs:{0}:view:*", count=1000):
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        if kind == "string":
            out[key] = orjson.loads(await redis.get(key))
        else:
            out[key] = await redis.zrange(key, 0, -1, withscores=True)
    out["checkpoint"] = await redis.hget(keys.checkpoint(0), "position")
    return out


async def shadow_keys(redis: Redis) -> list[bytes]:
    return [k async for k in redis.scan_iter(match="cs:{0}:*shadow*")]


async def history(api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock) -> None:
    await setup(api, target="none", tags=["t"])
    r = await api.post(
        "/v1/schedules", json={"id": "two", "workflow_id": "wf", "spec": {"cron": ["0 * * * *"]}}
    )
    assert r.status == 201
    ticker = await leader(redis, keys, clock)
    for _ in range(2):
        clock.advance(MINUTE)
        await ticker.tick(0)
    await api.post("/v1/schedules/two/pause")
    await api.patch("/v1/schedules/s", json={"name": "renamed"})


async def caught_up(redis: Redis, keys: Keyspace) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        last = await redis.xrevrange(keys.log(0), count=1)
        if last and await redis.hget(keys.checkpoint(0), "position") == last[0][0]:
            return
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)


async def test_a_shadow_equal_to_the_live_views_is_switched_in(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await history(api, redis, keys, clock)
    await caught_up(redis, keys)
    report = await shadow_rebuild(redis, keys, switch=True)
    assert report.empty and report.switched, report.summary()
    (d,) = report.partitions
    assert d.live_keys == d.shadow_keys > 0 and d.settled
    assert await shadow_keys(redis) == []
    switched = await views(redis, keys)
    # the live projector carries on from the moved checkpoint
    r = await api.post("/v1/schedules/s/pause", json={"note": "after the switch"})
    assert (await r.json())["status"] == "paused"
    await api.post("/v1/schedules/s/resume")
    after = await views(redis, keys)
    assert after["checkpoint"] != switched["checkpoint"]
    # and the views equal a plain rebuild from the log
    await caught_up(redis, keys)
    before_rebuild = await views(redis, keys)
    await rebuild(redis, keys)
    assert await views(redis, keys) == before_rebuild


async def test_a_different_shadow_is_reported_and_not_switched(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await history(api, redis, keys, clock)
    await caught_up(redis, keys)
    record = orjson.loads(await redis.get(keys.view(0, "schedule:s")))
    await redis.set(keys.view(0, "schedule:s"), orjson.dumps({**record, "name": "tampered"}))
    await redis.set(keys.view(0, "schedule:ghost"), orjson.dumps({"id": "ghost"}))
    await redis.delete(keys.view(0, "schedules:tag:t"))
    report = await shadow_rebuild(redis, keys, switch=True)
    assert not report.switched and not report.empty
    (d,) = report.partitions
    assert d.differing == ["schedule:s"]
    assert d.only_live == ["schedule:ghost"]
    assert d.only_shadow == ["schedules:tag:t"]
    assert d.counts == {"only_live": 1, "only_shadow": 1, "differing": 1}
    assert "DIFFERENCES" in report.summary() and "live views kept" in report.summary()
    assert await shadow_keys(redis) == []  # dropped
    tampered = orjson.loads(await redis.get(keys.view(0, "schedule:s")))
    assert tampered["name"] == "tampered"  # the live views are untouched

    forced = await shadow_rebuild(redis, keys, switch=True, force=True)
    assert forced.switched
    assert orjson.loads(await redis.get(keys.view(0, "schedule:s")))["name"] == "renamed"
    assert await redis.get(keys.view(0, "schedule:ghost")) is None
    assert await redis.zrange(keys.view(0, "schedules:tag:t"), 0, -1) == [b"s"]


async def test_without_switch_the_shadow_is_only_compared(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await history(api, redis, keys, clock)
    await caught_up(redis, keys)
    before = await views(redis, keys)
    report = await shadow_rebuild(redis, keys, switch=False)
    assert report.empty and not report.switched
    assert await views(redis, keys) == before
    assert await shadow_keys(redis) == []


async def test_an_empty_log_switches_to_empty_views(redis: Redis, keys: Keyspace) -> None:
    report = await shadow_rebuild(redis, keys, switch=True)
    assert report.empty and report.switched and report.events == 0
