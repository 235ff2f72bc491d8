"""Partition leases spread over ticker processes: join, clean leave and kill -9, with no
duplicate and no lost fire (every schedule's every nominal second fired exactly once)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from service.store.embedded import RedisProcess, start_redis_server
from service.store.keys import Keyspace
from tests import every_second
from tests.process import Service, wait_until

pytestmark = pytest.mark.slow

TTL_MS = 1000
PARTITIONS = 4
KEYS = Keyspace("cs", PARTITIONS)
SCHEDULES_N = 24


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    server = start_redis_server(tmp_path / "redis", appendonly=True)
    yield server
    server.stop()


def ticker(tmp_path: Path, url: str, name: str) -> Service:
    return Service(
        tmp_path / name,
        redis_url=url,
        roles="ticker",
        CRONSTREAM_LEASE_TTL_MS=str(TTL_MS),
        CRONSTREAM_PARTITIONS=str(PARTITIONS),
    )


def holders(client: sync_redis.Redis) -> list[int | None]:
    """The pid holding each partition's lease (owner tokens are host:pid:random)."""
    raw = [client.get(KEYS.lease(p)) for p in range(PARTITIONS)]
    return [int(r.decode().split(":")[1]) if r else None for r in raw]


def held_by(client: sync_redis.Redis, proc: Service) -> int:
    return holders(client).count(proc.process.pid)


def fired_total(client: sync_redis.Redis) -> int:
    return sum(int(client.xlen(KEYS.log(p))) for p in range(PARTITIONS))


def wait_for_fires(client: sync_redis.Redis, seconds_of_fires: int, what: str) -> None:
    start = fired_total(client)
    target = start + SCHEDULES_N * 3 * seconds_of_fires  # fired, run queued, ... per second
    wait_until(lambda: fired_total(client) >= target, 15, what)


def each_fired(client: sync_redis.Redis, sids: list[str], times: int) -> bool:
    """Whether every schedule has fired at least ``times`` nominal seconds (the log's
    total can pass a count while one partition's schedules are still behind)."""
    records = every_second.fires(client, KEYS)
    return all(len(records.get(sid, [])) >= times for sid in sids)


def assert_exactly_once(client: sync_redis.Redis, sids: list[str]) -> set[int]:
    """Every nominal second fired once, and every schedule fired in each phase."""
    epochs = every_second.assert_exactly_once(client, KEYS, sids)
    for sid, records in every_second.fires(client, KEYS).items():
        assert len(records) >= 4, (sid, len(records))
    return epochs


def test_a_joining_ticker_takes_half_and_a_leaving_one_gives_them_back(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    sids = every_second.create_schedules(redis_proc.url, KEYS, SCHEDULES_N)
    assert {KEYS.partition_of(s) for s in sids} == set(range(PARTITIONS))
    client = sync_redis.Redis.from_url(redis_proc.url)
    first = ticker(tmp_path, redis_proc.url, "first")
    second: Service | None = None
    try:
        wait_until(lambda: held_by(client, first) == PARTITIONS, 20, "the first to take all")
        wait_for_fires(client, 1, "fires from the first")
        second = ticker(tmp_path, redis_proc.url, "second")
        wait_until(lambda: client.zcard(KEYS.members("tickers")) == 2, 20, "the second to join")
        joined_at = time.monotonic()
        wait_until(
            lambda: held_by(client, first) == 2 and held_by(client, second) == 2,
            4 * TTL_MS / 1000,
            "two leases each",
        )
        print(f"balanced {time.monotonic() - joined_at:.2f}s after the join")
        wait_for_fires(client, 1, "fires from both")
        assert second.stop() == 0
        left_at = time.monotonic()
        wait_until(lambda: held_by(client, first) == PARTITIONS, 2 * TTL_MS / 1000, "all back")
        # freed at the clean stop, not expired: taken back within a lease TTL
        assert time.monotonic() - left_at < TTL_MS / 1000, time.monotonic() - left_at
        wait_for_fires(client, 1, "fires after the leave")
        wait_until(lambda: each_fired(client, sids, 4), 15, "every schedule fired 4 times")
    finally:
        for proc in (second, first):
            if proc is not None:
                proc.stop()
    epochs = assert_exactly_once(client, sids)
    assert max(epochs) >= 3  # leases moved to the second and back to the first
    client.close()


def test_kill_9_a_ticker_the_survivor_takes_its_partitions_within_the_ttl(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    sids = every_second.create_schedules(redis_proc.url, KEYS, SCHEDULES_N)
    client = sync_redis.Redis.from_url(redis_proc.url)
    procs = [ticker(tmp_path, redis_proc.url, name) for name in ("a", "b")]
    try:
        wait_until(
            lambda: sorted(held_by(client, p) for p in procs) == [2, 2], 25, "two leases each"
        )
        wait_for_fires(client, 1, "fires from both")
        victim, survivor = procs
        os.kill(victim.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: held_by(client, survivor) == PARTITIONS, 5, "the survivor to take all")
        takeover_s = time.monotonic() - killed_at
        print(f"survivor holds every partition {takeover_s:.2f}s after the kill")
        # the victim's leases expire one TTL after its last renewal; the survivor sees them
        # free at its next look (a fifth of the TTL), allowing for a loaded machine
        assert takeover_s <= TTL_MS / 1000 + 0.5, takeover_s
        wait_for_fires(client, 1, "fires after the takeover")
        wait_until(lambda: each_fired(client, sids, 4), 15, "every schedule fired 4 times")
    finally:
        codes = [p.stop() for p in procs]
    assert codes[1] == 0
    assert_exactly_once(client, sids)
    client.close()
