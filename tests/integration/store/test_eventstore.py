"""The append script and reads, against a real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service.domain.schedule import SchedulePaused, ScheduleResumed
from service.errors import IdempotencyKeyReused, VersionMismatch
from service.store.eventstore import ANY_VERSION, EventStore, Idempotency
from service.store.feed import parse_cursor, read_feed
from service.store.keys import Keyspace


def key(fp: str = "fp") -> Idempotency:
    return Idempotency(key="a:" + uuid.uuid4().hex, fingerprint=fp, ttl_ms=60_000)


async def append(
    store: EventStore, sid: str, expected: int, idem: Idempotency | None = None, n: int = 1
) -> tuple[int, list[str], bool]:
    result = await store.append(
        "schedule",
        sid,
        [SchedulePaused(note=str(i)) for i in range(n)],
        meta={"actor": "test"},
        expected_version=expected,
        snapshot={"v": expected + n},
        idempotency=idem or key(),
    )
    return result.version, result.positions, result.duplicate


async def test_append_writes_events_snapshot_and_index_together(
    redis: Redis, keys: Keyspace
) -> None:
    store = EventStore(redis, keys)
    version, positions, dup = await append(store, "s1", 0, n=2)
    assert (version, len(positions), dup) == (2, 2, False)
    assert await store.load("schedule", "s1") == ({"v": 2}, 2)
    events = await store.read_aggregate("schedule", "s1")
    assert [e.position for e in events] == positions
    assert [e.data["note"] for e in events] == ["0", "1"]
    assert events[0].meta == {"actor": "test"} and events[0].sid == "s1"


async def test_expected_version_mismatch_appends_nothing(redis: Redis, keys: Keyspace) -> None:
    store = EventStore(redis, keys)
    await append(store, "s1", 0)
    with pytest.raises(VersionMismatch) as err:
        await append(store, "s1", 0)
    assert err.value.actual == 1
    assert await redis.xlen(keys.log(0)) == 1
    assert (await append(store, "s1", ANY_VERSION))[0] == 2


async def test_concurrent_appenders_at_one_version_exactly_one_wins(
    redis: Redis, keys: Keyspace
) -> None:
    store = EventStore(redis, keys)
    await append(store, "s1", 0)
    # many independent clients race for version 1 -> 2
    clients = [
        Redis.from_url(
            redis.connection_pool.connection_kwargs
            and f"redis://127.0.0.1:{redis.connection_pool.connection_kwargs['port']}"
        )
        for _ in range(10)
    ]
    try:
        outcomes = await asyncio.gather(
            *[append(EventStore(c, keys), "s1", 1) for c in clients], return_exceptions=True
        )
    finally:
        for c in clients:
            await c.aclose()
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    losers = [o for o in outcomes if isinstance(o, VersionMismatch)]
    assert len(winners) == 1 and len(losers) == 9
    assert await redis.xlen(keys.log(0)) == 2


async def test_a_repeated_script_call_appends_once(redis: Redis, keys: Keyspace) -> None:
    """What redis-py does after a timeout: run the same call again."""
    store = EventStore(redis, keys)
    idem = key("same-request")
    first = await append(store, "s1", 0, idem)
    second = await append(store, "s1", 0, idem)  # the same call, retried
    assert second == (first[0], first[1], True)
    assert await redis.xlen(keys.log(0)) == 1
    with pytest.raises(IdempotencyKeyReused):
        await append(store, "s1", 1, Idempotency(idem.key, "another-request", 60_000))
    assert await redis.xlen(keys.log(0)) == 1


async def test_a_timed_out_append_retried_by_the_client_appends_once(
    redis_url: str, keys: Keyspace
) -> None:
    """A stalled Redis, a short socket timeout and client retries: one append results."""
    slow = Redis.from_url(
        redis_url, socket_timeout=0.05, retry=Retry(NoBackoff(), 5), retry_on_timeout=True
    )
    admin = Redis.from_url(redis_url)
    try:
        await admin.flushall()
        store = EventStore(slow, keys)
        await admin.script_load(store._append.script)  # so every retry runs the script itself
        # a Lua busy loop on another connection stalls Redis past the socket timeout
        stall = asyncio.create_task(
            admin.eval(
                "local t = redis.call('TIME'); local s = t[1] * 1000000 + t[2]; "
                "while true do local n = redis.call('TIME'); "
                "if n[1] * 1000000 + n[2] - s > 200000 then break end end; return 1",
                0,
            )
        )
        await asyncio.sleep(0.02)  # let the stall start first (not a wait for a condition)
        result = await append(store, "s1", 0, key("slow"))
        await stall
        # every copy the client sent is processed once Redis is free; wait for the first
        deadline = asyncio.get_running_loop().time() + 5
        while await admin.xlen(keys.log(0)) == 0:
            assert asyncio.get_running_loop().time() < deadline, "the append never landed"
            await asyncio.sleep(0.01)
        for _ in range(20):  # later copies, had they not been deduplicated, would land now
            await admin.ping()
        assert await admin.xlen(keys.log(0)) == 1
        assert result[0] == 1
    finally:
        await slow.aclose()
        await admin.aclose()


async def test_old_event_versions_are_upcast_on_read(redis: Redis, keys: Keyspace) -> None:
    from service.domain import upcasters

    @upcasters.upcaster("LegacyThing", 1)
    def _v1_to_v2(data: dict[str, object]) -> dict[str, object]:
        return {"label": data["name"]}

    try:
        await redis.xadd(
            keys.log(0),
            {"type": "LegacyThing", "v": 1, "sid": "x", "data": '{"name": "old"}', "meta": "{}"},
        )
        [event] = await EventStore(redis, keys).read(0, "0-0", 10)
        assert (event.v, event.data) == (2, {"label": "old"})
    finally:
        upcasters._UPCASTERS.pop(("LegacyThing", 1))


async def test_feed_merges_partitions_and_resumes_after_any_position(redis: Redis) -> None:
    keys = Keyspace("cs", 4)
    store = EventStore(redis, keys)
    sids = [f"s{i}" for i in range(12)]
    assert len({keys.partition_of(s) for s in sids}) > 1
    for sid in sids:
        await store.append(
            "schedule",
            sid,
            [SchedulePaused(), ScheduleResumed()],
            meta={},
            expected_version=0,
            snapshot={},
            idempotency=key(),
        )
    everything, cursor = await read_feed(store, None, 1000)
    assert len(everything) == 24
    assert len(parse_cursor(cursor, 4)) == 4
    # resuming after each item yields exactly the remaining items
    for i in (0, 5, 17, 23):
        rest, _ = await read_feed(store, everything[i][0], 1000)
        assert [e.position for _, e in rest] == [e.position for _, e in everything[i + 1 :]]
    # paging with a small limit sees each event once
    seen = []
    page_cursor = None
    for _ in range(30):
        page, page_cursor = await read_feed(store, page_cursor, 5)
        if not page:
            break
        seen += [(e.partition, e.position) for _, e in page]
    assert len(seen) == 24 and len(set(seen)) == 24
    with pytest.raises(ValueError):
        parse_cursor("1-0", 4)
