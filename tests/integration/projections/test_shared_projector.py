"""Projector processes divide the partitions: each follows its fair share, and a
leaving one's partitions are followed by the others (in one process against a real
Redis; the leases and membership are the tickers', under a role of their own)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from migrations.keyspace import check_keyspace
from projections.shared import SharedProjector
from service.commands import (
    SCHEDULES,
    WORKFLOWS,
    CommandService,
    ProjectionWaiter,
    RequestContext,
)
from service.domain import schedule as sched
from service.domain import workflow as wf
from service.store.eventstore import EventStore
from service.store.keys import Keyspace

TTL_MS = 600
KEYS = Keyspace("sp", 4)


async def until(predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


async def create(redis: Redis, ids: list[str]) -> None:
    commands = CommandService(
        EventStore(redis, KEYS), ProjectionWaiter(redis, KEYS), wait_timeout_s=0
    )
    target = wf.WorkflowConfig.model_validate({"target": {"type": "none"}})
    await commands.execute(WORKFLOWS, "w", wf.PutWorkflow("w", target), RequestContext())
    for sid in ids:
        config = sched.ScheduleConfig.model_validate(
            {"workflow_id": "w", "spec": {"cron": ["0 0 1 1 *"]}}
        )
        await commands.execute(SCHEDULES, sid, sched.CreateSchedule(sid, config), RequestContext())


async def created_and_viewed(redis: Redis, prefix: str, what: str) -> list[str]:
    """Create 16 schedules ``<prefix>00``… and wait until every one has its view."""
    ids = [f"{prefix}{i:02d}" for i in range(16)]
    await create(redis, ids)
    names = [KEYS.view(KEYS.partition_of(sid), f"schedule:{sid}") for sid in ids]

    async def viewed() -> bool:
        return bool(await redis.exists(*names) == len(names))

    await until(viewed, 10, what)
    return ids


async def test_projector_processes_divide_the_partitions_and_take_over_a_leaving_ones(
    redis: Redis,
) -> None:
    await check_keyspace(redis, KEYS)
    first, second = (SharedProjector(redis, KEYS, TTL_MS, owner=o) for o in ("a", "b"))
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    running = [asyncio.create_task(first.run(stop_first))]
    try:
        await until(_held(first, 4), 5, "the only projector to hold every partition")
        running.append(asyncio.create_task(second.run(stop_second)))
        await until(_split(first, second), 5, "two projectors to hold two partitions each")
        ids = await created_and_viewed(redis, "s", "every schedule's view, from both projectors")
        assert {KEYS.partition_of(sid) for sid in ids} == set(range(4))
        stop_second.set()
        await running[1]
        await until(_held(first, 4), 5, "the projector left to take every partition")
        await created_and_viewed(redis, "t", "the later schedules' views")
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.gather(*running, return_exceptions=True)
    # at a clean stop each frees its leases, for the others to take at once
    assert [await redis.get(KEYS.lease(p, "projector")) for p in range(4)] == [None] * 4


def _held(shared: SharedProjector, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(shared.held()) == count

    return check


def _split(first: SharedProjector, second: SharedProjector) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        a, b = set(first.held()), set(second.held())
        return len(a) == 2 and len(b) == 2 and not a & b

    return check


async def test_a_dead_projectors_partitions_are_followed_once_its_leases_expire(
    redis: Redis,
) -> None:
    """A process that died holding leases (its heartbeats and renewals stopped): the
    other takes its partitions after the TTL, and follows them."""
    await check_keyspace(redis, KEYS)
    dead = SharedProjector(redis, KEYS, TTL_MS, owner="dead")
    await dead.membership.beat()
    for lease in dead.leases[2:]:
        assert await lease.acquire()
    alive = SharedProjector(redis, KEYS, TTL_MS, owner="alive")
    stop = asyncio.Event()
    task = asyncio.create_task(alive.run(stop))
    try:
        await until(_held(alive, 4), 5, "the live projector to take the dead one's partitions")
        await created_and_viewed(redis, "d", "every schedule's view")
    finally:
        stop.set()
        await task
