"""The ticker's batches: one script call decides many schedules exactly as one call per
schedule would; a lost lease stops the batches; a batch read while another is fired
never holds the same schedules; a backlog catches up by each schedule's policy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from service.audit.verify import verify
from service.clock import FixedClock
from service.domain.fire import FireRequest
from service.store import fires
from service.store.fires import FireReply
from service.store.keys import Keyspace
from service.ticker.ticker import Ticker
from tests.integration.api.helpers import put_workflow
from tests.integration.ticker.helpers import MINUTE, fired, leader, of_type, setup


async def create(api: TestClient, sid: str, workflow: str = "wf", **body: Any) -> None:
    payload = {"id": sid, "workflow_id": workflow, "spec": {"cron": ["* * * * *"]}, **body}
    r = await api.post("/v1/schedules", json=payload)
    assert r.status == 201, await r.text()


async def due_once(
    api: TestClient,
    redis: Redis,
    keys: Keyspace,
    clock: FixedClock,
    count: int,
    *,
    minutes: int = 1,
    policy: dict[str, Any] | None = None,
    batch_size: int | None = None,
) -> tuple[Ticker, list[str]]:
    """``count`` every-minute schedules ``s00``… (target ``none``), planned by the first
    tick of a ticker holding the lease; then the clock moves ``minutes`` on."""
    body: dict[str, Any] = {"policy": policy} if policy else {}
    sids = [f"s{i:02d}" for i in range(count)]
    await setup(api, sids[0], target="none", **body)
    for sid in sids[1:]:
        await create(api, sid, **body)
    sized: dict[str, Any] = {"batch_size": batch_size} if batch_size else {}
    ticker = Ticker(redis, keys, clock=clock, **sized)
    for lease in ticker.leases:
        assert await lease.acquire()
    await ticker.tick(0)
    clock.advance(minutes * MINUTE)
    return ticker, sids


async def snapshot(redis: Redis) -> dict[bytes, tuple[bytes, int]]:
    return {
        key: (await redis.dump(key), max(await redis.pttl(key), 0))
        async for key in redis.scan_iter(count=1000)
    }


async def restore(redis: Redis, saved: dict[bytes, tuple[bytes, int]]) -> None:
    await redis.flushdb()
    for key, (dumped, ttl) in saved.items():
        await redis.restore(key, ttl, dumped, replace=True)


async def appended(redis: Redis, keys: Keyspace, after: bytes) -> list[tuple[bytes, ...]]:
    """The log entries after ``after``, without their ids (Redis's clock differs)."""
    entries = await redis.xrange(keys.log(0), min=b"(" + after)
    fields = (b"type", b"sid", b"data", b"meta", b"prev", b"hash")
    return [tuple(f[name] for name in fields) for _, f in entries]


async def script_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


async def test_a_batch_decides_as_one_call_per_schedule_would(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, "fires")
    await put_workflow(api, "wn", target={"type": "none"})
    await create(api, "none", "wn")
    await create(api, "skips")  # overlap skip, a run running
    await create(api, "holds", policy={"overlap": "buffer_one"})  # a run running
    await create(api, "catch", policy={"catchup": "all"})
    await create(api, "stale")  # updated after it was planned
    await create(api, "paused")  # paused after it was planned
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    for sid in ("skips", "holds"):
        await redis.sadd(keys.running(0, sid), f"run_of_{sid}")
    clock.advance(3 * MINUTE)
    batch = await ticker.due.read(0)
    requests = await ticker._requests(0, batch)
    assert await api.patch("/v1/schedules/stale", json={"input": {"v": 2}}) is not None
    assert (await api.post("/v1/schedules/paused/pause", json={})).status == 200
    saved = await snapshot(redis)
    [(last, _)] = await redis.xrevrange(keys.log(0), count=1)

    calls = await script_calls(redis)
    batched = await ticker.script.run_many(requests)
    assert await script_calls(redis) == calls + 1  # the whole batch in one call
    batched_log = await appended(redis, keys, last)

    await restore(redis, saved)
    one_by_one = [await ticker.script.run(request) for request in requests]
    assert batched == one_by_one
    assert await appended(redis, keys, last) == batched_log  # the same events, same chain

    by_sid = {r.schedule_id: reply for r, reply in zip(requests, batched, strict=True)}
    assert {sid: reply[:4] for sid, reply in by_sid.items()} == {
        "fires": ("OK", 1, 0, 0),  # catch-up latest: the last of three, two missed
        "none": ("OK", 1, 0, 0),
        "skips": ("OK", 0, 1, 0),
        "holds": ("OK", 1, 0, 0),  # held behind the running run
        "catch": ("OK", 3, 0, 0),  # catch-up all
        "stale": ("STALE", 0, 0, 0),
        "paused": ("INACTIVE", 0, 0, 0),
    }
    types = {entry[0] for entry in batched_log}
    assert types == {
        b"ScheduleFired",
        b"FireSkipped",
        b"FiresMissed",
        b"RunQueued",
        b"RunSucceeded",
    }


async def test_a_lost_lease_stops_the_batches_of_a_tick(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    old, sids = await due_once(api, redis, keys, clock, 12, batch_size=4)
    new = Ticker(redis, keys, clock=clock)
    calls: list[list[FireRequest]] = []
    original = old.script.run_many

    async def taken_over_after_the_first(requests: list[FireRequest]) -> list[FireReply]:
        calls.append(requests)
        if len(calls) == 2:  # the lease expires and another ticker takes it
            await redis.delete(keys.lease(0))
            assert await new.leases[0].acquire()
        return await original(requests)

    old.script.run_many = taken_over_after_the_first  # type: ignore[method-assign]
    await old.tick(0)
    # the third batch was sent while the second's reply was awaited: fenced too, and
    # no batch after it
    assert len(calls) == 3
    assert old.stats.fired == 4 and old.stats.fenced == 1 and not old.leases[0].held()
    first = {r.schedule_id for r in calls[0]}
    assert {sid for sid in sids if await fired(redis, keys, sid)} == first
    await new.tick(0)
    for sid in sids:  # each fired once: the first batch by the old holder, the rest by the new
        epochs = [f["epoch"] for f in await of_type(redis, keys, sid, "ScheduleFired")]
        assert epochs == ([1] if sid in first else [2]), sid


async def test_a_batch_read_while_one_is_fired_starts_after_it(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    ticker, _ = await due_once(api, redis, keys, clock, 10, batch_size=4)
    first = await ticker.due.read(0)
    second = await ticker.due.read(0, after=first)
    third = await ticker.due.read(0, after=second)
    ids = [[d.schedule_id for d in b.schedules] for b in (first, second, third)]
    assert ids == [[f"s{i:02d}" for i in range(j, min(j + 4, 10))] for j in (0, 4, 8)]
    # once the first batch is fired (its schedules moved on), a read after it starts
    # again at the front of what is still due
    await ticker.script.run_many(await ticker._requests(0, first))
    again = await ticker.due.read(0, after=first)
    assert [d.schedule_id for d in again.schedules] == ids[1]


async def test_a_backlog_catches_up_by_policy_in_batches(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    policy = {"catchup": "all", "catchup_window": "1h", "catchup_max": 3}
    # down ten minutes: ten times due per schedule
    ticker, sids = await due_once(
        api, redis, keys, clock, 30, minutes=10, policy=policy, batch_size=8
    )
    assert await ticker.tick(0) == 30  # one tick, in four batches
    assert ticker.stats.ticks == 4 + 4 and ticker.stats.stale == 0  # no two batches met
    for sid in sids:  # never more than catchup_max at once: the latest three
        assert await fired(redis, keys, sid) == [f"2026-01-15T12:{m:02d}:00Z" for m in (8, 9, 10)]
        [missed] = await of_type(redis, keys, sid, "FiresMissed")
        assert missed["count"] == 7
    assert ticker.stats.fired == 90


async def test_a_batch_fired_before_redis_failed_is_counted(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    ticker, _ = await due_once(api, redis, keys, clock, 8, batch_size=4)
    reads = 0
    original = ticker.due.read

    async def failing_third(partition: int, after: Any = None) -> Any:
        nonlocal reads
        reads += 1
        if reads == 3:  # while the second batch is fired, after the first was
            raise RedisConnectionError("connection lost")
        return await original(partition, after)

    ticker.due.read = failing_third  # type: ignore[method-assign]
    with pytest.raises(RedisConnectionError):
        await ticker.tick(0)
    assert ticker.stats.fired == 4  # the first batch: its replies came back before


async def test_a_batch_that_fails_halfway_leaves_the_chain_whole(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    ticker, _ = await due_once(api, redis, keys, clock, 3)
    # the second schedule's event index is not a list: noting its entries there fails
    # after they were appended, halfway through the call; Redis keeps what the call
    # wrote until then
    await redis.delete(keys.aggregate_events(0, "schedule", "s01"))
    await redis.set(keys.aggregate_events(0, "schedule", "s01"), "not a list")
    batch = await ticker.due.read(0)
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await ticker.script.run_many(await ticker._requests(0, batch))
    assert await fired(redis, keys, "s00") == ["2026-01-15T12:01:00Z"]
    report = await verify(redis, keys)
    assert report.intact, report.breaks  # the head is the last entry's hash
    [(_, fields)] = await redis.xrevrange(keys.log(0), count=1)
    assert fields[b"sid"] == b"s01" and await redis.get(keys.chain(0)) == fields[b"hash"]


async def test_a_backlog_is_fired_in_calls_of_bounded_size(
    api: TestClient,
    redis: Redis,
    keys: Keyspace,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fires, "BATCH_FIRES_MAX", 25)
    # ten times due per schedule
    ticker, _ = await due_once(api, redis, keys, clock, 12, minutes=10, policy={"catchup": "all"})
    calls = await script_calls(redis)
    await ticker.tick(0)
    # the due read, then six calls of two schedules' twenty fires each, where one call
    # would hold Redis for all 120
    assert await script_calls(redis) - calls == 1 + 6
    assert ticker.stats.fired == 120
    for i in range(12):
        assert len(await fired(redis, keys, f"s{i:02d}")) == 10


async def script_checks(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_script|exists", stats.get("cmdstat_script", {})).get("calls", 0))


async def test_a_batch_is_sent_at_once_and_again_once_redis_lost_the_script(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    """No round trip asking whether the script is loaded comes before a batch (it kept
    the next batch's planning from overlapping this one's firing); a Redis that lost its
    scripts (restarted, flushed) gets the script loaded and the batch sent again."""
    ticker, _ = await due_once(api, redis, keys, clock, 4)
    checks = await script_checks(redis)
    await ticker.tick(0)
    assert ticker.stats.fired == 4
    assert await script_checks(redis) == checks
    await redis.script_flush()
    clock.advance(MINUTE)
    await ticker.tick(0)
    assert ticker.stats.fired == 8
    for i in range(4):
        assert len(await fired(redis, keys, f"s{i:02d}")) == 2


async def test_schedules_with_the_same_config_share_one_parsed_config(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, "s00")
    await create(api, "s01")
    await create(api, "s02", spec={"cron": ["*/5 * * * *"]})
    ticker = await leader(redis, keys, clock)
    batch = await ticker.due.read(0)
    await ticker.due.load_configs(0, batch.schedules)
    first, second, other = (ticker.due.config(d) for d in batch.schedules)
    assert first is not None and first is second and first.spec.cron == ["* * * * *"]
    assert other is not None and other.spec.cron == ["*/5 * * * *"]


async def test_a_failed_fire_leaves_no_read_running_behind_it(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    """The read of the batch after next goes out with a fire; when the fire fails, that
    read is ended with it, not left running (or failing unheard) after the tick."""
    ticker, _ = await due_once(api, redis, keys, clock, 12, batch_size=4)
    reads = 0
    ended = asyncio.Event()
    original = ticker.due.read

    async def slow_third(partition: int, after: Any = None) -> Any:
        nonlocal reads
        reads += 1
        if reads < 3:
            return await original(partition, after)
        try:
            await asyncio.Event().wait()  # the read sent beside the first fire
        finally:
            ended.set()

    async def failing(requests: list[FireRequest]) -> list[FireReply]:
        raise RedisConnectionError("connection lost")

    ticker.due.read = slow_third  # type: ignore[method-assign]
    ticker.script.run_many = failing  # type: ignore[method-assign]
    with pytest.raises(RedisConnectionError):
        await ticker.tick(0)
    assert reads == 3 and ended.is_set()
