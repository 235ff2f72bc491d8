"""Projections: exactly-once application, and rebuilds equal to the live views."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from projections.projector import Projector
from projections.rebuild import rebuild
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from tests.integration.api.helpers import SPEC, create_schedule, put_workflow


async def dump_views(redis: Redis, keys: Keyspace, namespace: str = "view") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in range(keys.partitions):
        async for key in redis.scan_iter(match=keys.view_prefix(p, namespace) + "*", count=500):
            kind = (await redis.type(key)).decode()
            name = key.decode()
            if kind == "string":
                out[name] = await redis.get(key)
            elif kind == "zset":
                out[name] = await redis.zrange(key, 0, -1)
    return out


async def scripted_history(api: TestClient) -> None:
    await put_workflow(api)
    await put_workflow(api, "other")
    for i in range(6):
        await create_schedule(api, f"s{i}", tags=[f"t{i % 2}"])
    await api.patch("/v1/schedules/s1", json={"workflow_id": "other", "tags": ["moved"]})
    await api.post("/v1/schedules/s2/pause", json={"note": "p"})
    await api.delete("/v1/schedules/s3")
    await api.post("/v1/schedules", json={"id": "s3", "workflow_id": "scan", "spec": SPEC})
    await api.put("/v1/workflows/gone", json={"target": {"type": "none"}})
    await api.delete("/v1/workflows/gone")


async def test_rebuild_gives_identical_views(api: TestClient, redis: Redis, keys: Keyspace) -> None:
    await scripted_history(api)
    live = await dump_views(redis, keys)
    assert live  # something to compare
    report = await rebuild(redis, keys)
    assert report.events == await redis.xlen(keys.log(0))
    assert await dump_views(redis, keys) == live


async def test_applying_a_batch_twice_changes_nothing(
    api: TestClient, redis: Redis, keys: Keyspace
) -> None:
    await scripted_history(api)
    live = await dump_views(redis, keys)
    events = await EventStore(redis, keys).read(0, "0-0", 1000)
    projector = Projector(redis, keys)
    # the batch was computed from an old checkpoint: refused, nothing changes
    assert await projector.apply_batch(0, "", events) is False
    assert await dump_views(redis, keys) == live
    # even with the checkpoint forced back, per-record positions make re-application a no-op
    checkpoint = await projector.checkpoint(0)
    await redis.hdel(keys.checkpoint(0), "position")
    assert await projector.apply_batch(0, "", events) is True
    assert await dump_views(redis, keys) == live
    assert await projector.checkpoint(0) == checkpoint


async def test_competing_projectors_build_the_same_views(
    redis: Redis, keys: Keyspace, api: TestClient
) -> None:
    await scripted_history(api)
    live = await dump_views(redis, keys)
    await redis.delete(keys.checkpoint(0))
    async for key in redis.scan_iter(match=keys.view_prefix(0) + "*"):
        await redis.delete(key)
    small = [Projector(redis, keys, batch_size=3) for _ in range(4)]
    await asyncio.gather(*[p.catch_up(0) for p in small])
    assert await dump_views(redis, keys) == live


async def test_a_multi_partition_keyspace_rebuilds_identically(redis: Redis) -> None:
    from service.commands import SCHEDULES, CommandService, ProjectionWaiter, RequestContext
    from service.domain import schedule as sched
    from service.domain.spec import Spec

    keys = Keyspace("mp", 3)
    store = EventStore(redis, keys)
    commands = CommandService(store, ProjectionWaiter(redis, keys), wait_timeout_s=0.0)
    config = sched.ScheduleConfig(workflow_id="w", spec=Spec.model_validate(SPEC))
    for i in range(20):
        await commands.execute(
            SCHEDULES, f"s{i}", sched.CreateSchedule(f"s{i}", config), RequestContext()
        )
        if i % 3 == 0:
            await commands.execute(
                SCHEDULES, f"s{i}", sched.PauseSchedule(f"s{i}"), RequestContext()
            )
    projector = Projector(redis, keys)
    for p in range(3):
        await projector.catch_up(p)
    live = await dump_views(redis, keys)
    assert {k.split(":")[1] for k in live} == {"{0}", "{1}", "{2}"}
    await rebuild(redis, keys)
    assert await dump_views(redis, keys) == live
