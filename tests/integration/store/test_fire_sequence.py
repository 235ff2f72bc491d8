"""The times of one backfill (or one tick's catch-up) run one after another: fire.lua
links each to the run before it, runs.lua queues it when that run ends, behind any fire
the overlap policy holds in the buffer meanwhile; a cancelled time is passed over."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.domain.fire import backfill_requests, trigger_request
from service.domain.policies import OverlapPolicy
from service.domain.schedule import ScheduleConfig, SchedulePolicy
from service.domain.spec import Spec
from service.store.fires import FireScript
from service.store.keys import Keyspace
from service.store.runs import RunStore
from tests.conftest import NOW_MS
from tests.integration.ticker.helpers import of_type, setup

SID = "s"
MINUTE = 60_000


def config(overlap: str) -> ScheduleConfig:
    return ScheduleConfig(
        workflow_id="wf",
        spec=Spec(cron=["* * * * *"]),
        policy=SchedulePolicy(overlap=OverlapPolicy(overlap)),
    )


async def active(redis: Redis, keys: Keyspace) -> None:
    await redis.hset(keys.state(0, "schedule", SID), mapping={"version": 1, "status": "active"})


async def backfill(redis: Redis, keys: Keyspace, overlap: str, times: int = 3) -> list[str]:
    """A backfill of ``times`` minutes through the fire script: its run ids, in order."""
    nominal = [NOW_MS - (times - i) * MINUTE for i in range(times)]
    [request] = backfill_requests(SID, config(overlap), "http", nominal, NOW_MS, "api:t", {})
    reply = await FireScript(redis, keys).run(request)
    assert reply.status == "OK" and reply.fired == times
    return [f.run_id for f in request.fires]


async def finish(redis: Redis, keys: Keyspace, run_id: str, outcome: str = "succeeded") -> str:
    """A run ends; the id of the run that starts because of it ('' for none)."""
    reply, started = await RunStore(redis, keys).finish(
        0, SID, "schedule", run_id, outcome=outcome, meta={}, now_ms=NOW_MS
    )
    assert reply == "OK"
    return started or ""


async def status(redis: Redis, keys: Keyspace, run_id: str) -> str:
    return (await redis.hget(keys.run(0, run_id), "status") or b"").decode()


async def test_a_backfills_runs_follow_one_another(redis: Redis, keys: Keyspace) -> None:
    await active(redis, keys)
    first, second, third = await backfill(redis, keys, "skip")
    assert [await status(redis, keys, r) for r in (first, second, third)] == [
        "queued",
        "buffered",
        "buffered",
    ]
    assert await finish(redis, keys, first) == second
    assert await status(redis, keys, third) == "buffered"
    assert await finish(redis, keys, second, "failed") == third  # whatever the outcome
    assert await finish(redis, keys, third) == ""
    assert await redis.scard(keys.running(0, SID)) == 0


async def test_fires_held_meanwhile_go_before_the_next_time(redis: Redis, keys: Keyspace) -> None:
    await active(redis, keys)
    first, second, third = await backfill(redis, keys, "buffer_one")
    # a trigger while the backfill's first run runs: held by buffer_one
    trigger = trigger_request(SID, config("buffer_one"), "http", NOW_MS, "api:t", {}, None)
    assert (await FireScript(redis, keys).run(trigger)).fired == 1
    held = trigger.fires[0].run_id
    assert await status(redis, keys, held) == "buffered"
    assert await finish(redis, keys, first) == held  # the held fire first...
    assert await status(redis, keys, second) == "buffered"
    assert await finish(redis, keys, held) == second  # ...then the backfill goes on
    assert await finish(redis, keys, second) == third


async def test_a_time_cancelled_while_it_waits_is_passed_over(redis: Redis, keys: Keyspace) -> None:
    await active(redis, keys)
    first, second, third = await backfill(redis, keys, "skip")
    store = RunStore(redis, keys)
    assert await store.cancel(0, SID, "schedule", second, terminate=False, actor="t", now_ms=1) == (
        "CANCELLED"
    )
    assert await finish(redis, keys, first) == third
    assert await status(redis, keys, second) == "cancelled"


async def test_a_held_first_time_cancelled_leaves_its_place_to_the_next(
    redis: Redis, keys: Keyspace
) -> None:
    await active(redis, keys)
    await redis.sadd(keys.running(0, SID), "earlier")  # a run that was running before
    await redis.hset(keys.run(0, "earlier"), mapping={"sid": SID, "status": "running"})
    first, second, third = await backfill(redis, keys, "buffer_all")
    [entry] = await redis.lrange(keys.buffer(0, SID), 0, -1)
    assert orjson.loads(entry)["run_id"] == first
    store = RunStore(redis, keys)
    assert await store.cancel(0, SID, "schedule", first, terminate=False, actor="t", now_ms=1) == (
        "CANCELLED"
    )
    [entry] = await redis.lrange(keys.buffer(0, SID), 0, -1)
    assert orjson.loads(entry)["run_id"] == second
    assert await finish(redis, keys, "earlier") == second
    assert await finish(redis, keys, second) == third


async def test_a_revived_run_does_not_release_its_next_time_again(
    redis: Redis, keys: Keyspace
) -> None:
    await active(redis, keys)
    first, second, third = await backfill(redis, keys, "skip")
    assert await finish(redis, keys, first, "failed") == second
    assert await RunStore(redis, keys).revive(0, SID, "schedule", first, actor="t", now_ms=1) == (
        "OK"
    )
    assert await finish(redis, keys, first) == ""  # the second still runs; the third waits
    assert await status(redis, keys, third) == "buffered"
    assert await finish(redis, keys, second) == third


async def test_a_backfill_sent_in_chunks_follows_itself(
    api: TestClient, redis: Redis, keys: Keyspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.domain.fire.requests.BACKFILL_CHUNK", 2)
    await setup(api, SID)  # overlap: skip
    r = await api.post(
        f"/v1/schedules/{SID}/backfill",
        json={"start": "2026-01-14T00:00:00Z", "end": "2026-01-14T00:04:00Z"},
    )
    assert await r.json() == {
        "nominal_times": 5,
        "fired": 5,
        "skipped": 0,
        "dropped": 0,
        "already_backfilled": 0,
    }
    fires: list[dict[str, Any]] = await of_type(redis, keys, SID, "ScheduleFired")
    runs = [f["run_id"] for f in fires]
    assert [f.get("after") for f in fires] == [None, *runs[:-1]]  # across the three calls
    assert len(await of_type(redis, keys, SID, "RunQueued")) == 1
    for before, after in itertools.pairwise(runs):
        assert await finish(redis, keys, before) == after


async def test_a_call_notes_every_entry_it_appends_in_the_schedules_event_index(
    redis: Redis, keys: Keyspace
) -> None:
    """The index is pushed once per request, in parts of bounded size: a 500-time chunk of
    a 'none' workflow appends 1,500 entries, past one part."""
    await active(redis, keys)
    nominal = [NOW_MS - (500 - i) * MINUTE for i in range(500)]
    [request] = backfill_requests(SID, config("allow_all"), "none", nominal, NOW_MS, "api:t", {})
    reply = await FireScript(redis, keys).run(request)
    assert reply.status == "OK" and reply.fired == 500
    appended = [eid for eid, fields in await redis.xrange(keys.log(0)) if fields[b"sid"] == b"s"]
    assert len(appended) == 1500
    assert await redis.lrange(keys.aggregate_events(0, "schedule", SID), 0, -1) == appended
