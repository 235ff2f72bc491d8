"""Ticker membership and the fair share of partition leases, with tickers in one process
against a real Redis (the processes' version is tests/fault/test_rebalance.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from service.store.keys import Keyspace
from service.ticker.lease import Lease
from service.ticker.membership import FairShare, Membership, fair_share
from service.ticker.ticker import Ticker

TTL_MS = 600
KEYS = Keyspace("mb", 4)


async def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("partitions", "members", "share"),
    [(4, 1, 4), (4, 2, 2), (4, 3, 2), (4, 4, 1), (4, 8, 1), (5, 2, 3), (1, 3, 1), (16, 0, 16)],
)
def test_the_share_is_at_most_ceil_p_over_m(partitions: int, members: int, share: int) -> None:
    assert fair_share(partitions, members) == share


async def test_members_beat_leave_and_the_silent_are_dropped(redis: Redis) -> None:
    a = Membership(redis, KEYS, "a", TTL_MS)
    b = Membership(redis, KEYS, "b", TTL_MS)
    assert not await a.beat()  # alone, as it assumed before its first heartbeat
    assert await b.beat()
    assert b.members == ["a", "b"] and b.share() == 2
    assert await a.beat() and a.members == ["a", "b"]
    await b.leave()
    assert await a.beat() and a.members == ["a"] and a.share() == 4
    assert await b.beat()
    # b falls silent: a drops it once its last heartbeat is a TTL old, by Redis's clock
    deadline = time.monotonic() + 5
    while a.members != ["a"]:
        assert time.monotonic() < deadline, a.members
        await asyncio.sleep(0.05)
        await a.beat()
    assert a.share() == 4


async def run_ticker(redis: Redis, name: str) -> tuple[Ticker, asyncio.Event, asyncio.Task[None]]:
    ticker = Ticker(redis, KEYS, lease_ttl_ms=TTL_MS, owner=name)
    stop = asyncio.Event()
    return ticker, stop, asyncio.create_task(ticker.run(stop))


async def holders(redis: Redis) -> list[str | None]:
    raw = [await redis.get(KEYS.lease(p)) for p in range(KEYS.partitions)]
    return [r.decode() if r is not None else None for r in raw]


async def test_a_joining_ticker_gets_half_and_a_leaving_one_gives_all_back(redis: Redis) -> None:
    first, stop_first, task_first = await run_ticker(redis, "first")
    second: Ticker | None = None
    try:
        await until(lambda: len(first.held()) == 4, 5, "the first ticker to take all four")
        second, stop_second, task_second = await run_ticker(redis, "second")
        await until(
            lambda: len(first.held()) == 2 and len(second.held()) == 2,
            6 * TTL_MS / 1000,
            "two leases each",
        )
        assert set(first.held()).isdisjoint(second.held())
        assert sorted(h or "" for h in await holders(redis)) == [
            "first",
            "first",
            "second",
            "second",
        ]
        left_at = time.monotonic()
        stop_second.set()
        await task_second
        assert await redis.zrange(KEYS.members("tickers"), 0, -1) == [b"first"]
        await until(lambda: len(first.held()) == 4, 3 * TTL_MS / 1000, "the first to take all")
        # released, not expired: the first takes them well within a lease TTL
        assert time.monotonic() - left_at < TTL_MS / 1000
    finally:
        stop_first.set()
        await task_first
    assert await holders(redis) == [None] * 4
    assert await redis.zcard(KEYS.members("tickers")) == 0


async def test_a_released_lease_is_announced_on_the_partitions_wake_channel(
    redis: Redis,
) -> None:
    lease = Lease(redis, KEYS, 2, TTL_MS, "giver")
    assert await lease.acquire()
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(KEYS.wake(2))
        await pubsub.get_message(timeout=1)  # the subscription's confirmation
        await lease.release()
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert message is not None and message["data"] == b"released"
    assert await redis.get(KEYS.lease(2)) is None


@pytest.mark.parametrize(("role", "members"), [("", "tickers"), ("projector", "projectors")])
async def test_leases_taken_at_once_stop_at_the_share(
    redis: Redis, role: str, members: str
) -> None:
    """The partitions' loops take leases concurrently: with two members, one that tries
    all four at once takes two, not four (and a projector's share is kept alike)."""
    other = Membership(redis, KEYS, "other", TTL_MS, members)
    await other.beat()
    membership = Membership(redis, KEYS, "mine", TTL_MS, members)
    await membership.beat()
    leases = [Lease(redis, KEYS, p, TTL_MS, "mine", role) for p in range(KEYS.partitions)]
    share = FairShare(membership, leases, role or "ticker")
    assert membership.share() == 2
    taken = await asyncio.gather(*(share.take(lease) for lease in leases))
    assert sum(taken) == 2 and len(share.held()) == 2
    assert await redis.exists(*(KEYS.lease(p, role) for p in range(KEYS.partitions))) == 2


async def test_a_released_projector_lease_wakes_no_one(redis: Redis) -> None:
    """Only a ticker's lease is announced (tickers wait on the wake channel); a projector
    process looks for free leases on its own, so its release publishes nothing."""
    lease = Lease(redis, KEYS, 1, TTL_MS, "giver", "projector")
    assert await lease.acquire()
    async with redis.pubsub() as pubsub:
        await pubsub.psubscribe("*")
        await pubsub.get_message(timeout=1)  # the subscription's confirmation
        await lease.release()
        assert await redis.get(KEYS.lease(1, "projector")) is None
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
    assert message is None
