"""The ticker with an injected clock: every policy, catch-up case and race."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.clock import FixedClock
from service.store.fires import FireScript
from service.store.keys import Keyspace
from service.store.runs import RunStore
from service.ticker.ticker import Ticker
from tests.integration.ticker.helpers import MINUTE, fired, leader, of_type, setup


async def test_each_nominal_time_fires_once(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, target="none")
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)  # created at 12:00:00.000: 12:00 itself is not after creation
    assert await fired(redis, keys, "s") == []
    for _ in range(3):
        clock.advance(MINUTE)
        await ticker.tick(0)
        await ticker.tick(0)  # a second tick at the same instant fires nothing more
    assert await fired(redis, keys, "s") == [
        "2026-01-15T12:01:00Z",
        "2026-01-15T12:02:00Z",
        "2026-01-15T12:03:00Z",
    ]
    queued = await of_type(redis, keys, "s", "RunQueued")
    assert len({q["run_id"] for q in queued}) == 3
    assert len(await of_type(redis, keys, "s", "RunSucceeded")) == 3  # target none
    fire = (await of_type(redis, keys, "s", "ScheduleFired"))[0]
    assert set(fire) >= {"fire_id", "nominal_time", "fire_time", "epoch", "trigger", "run_id"}
    assert fire["fire_id"] == "s:1768478460000:schedule" and fire["epoch"] == 1
    view = await (await api.get("/v1/schedules/s")).json()
    assert view["info"]["action_count"] == 3
    assert view["last_run_status"] == "succeeded"
    assert [a["outcome"] for a in view["info"]["recent_actions"]] == ["fired"] * 3


async def test_a_repeated_fire_call_appends_nothing(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, target="none")
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    clock.advance(MINUTE)
    captured = []
    script = ticker.script
    original = script.run_many

    async def capture(requests):  # type: ignore[no-untyped-def]
        captured.extend(requests)
        return await original(requests)

    script.run_many = capture  # type: ignore[method-assign]
    await ticker.tick(0)
    before = await redis.xlen(keys.log(0))
    reply = await FireScript(redis, keys).run(captured[0])  # the same call again
    assert reply.status == "STALE"
    assert await redis.xlen(keys.log(0)) == before


@pytest.mark.parametrize(
    ("catchup", "fired_minutes", "missed"),
    [
        ("latest", [10], 9),
        ("oldest", [1], 9),
        ("all", list(range(1, 11)), 0),
        ("none", [], 10),
    ],
)
async def test_catchup_after_downtime(
    api: TestClient,
    redis: Redis,
    keys: Keyspace,
    clock: FixedClock,
    catchup: str,
    fired_minutes: list[int],
    missed: int,
) -> None:
    await setup(api, target="none", policy={"catchup": catchup})
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    clock.advance(10 * MINUTE + 30_000)  # down from 12:00 to 12:10:30
    await ticker.tick(0)
    assert await fired(redis, keys, "s") == [f"2026-01-15T12:{m:02d}:00Z" for m in fired_minutes]
    records = await of_type(redis, keys, "s", "FiresMissed")
    assert sum(r["count"] for r in records) == missed
    assert len(records) == (1 if missed else 0)  # one event, never one per time
    view = await (await api.get("/v1/schedules/s")).json()
    assert view["info"]["missed_catchup_count"] == missed


async def test_outage_longer_than_the_window_and_catchup_max(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(
        api, target="none", policy={"catchup": "all", "catchup_window": "5m", "catchup_max": 3}
    )
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    clock.advance(10 * MINUTE)  # 12:10:00; the window reaches back to 12:05
    await ticker.tick(0)
    assert await fired(redis, keys, "s") == [
        "2026-01-15T12:08:00Z",
        "2026-01-15T12:09:00Z",
        "2026-01-15T12:10:00Z",
    ]
    [missed] = await of_type(redis, keys, "s", "FiresMissed")
    assert missed == {
        "count": 7,
        "first": "2026-01-15T12:01:00Z",
        "last": "2026-01-15T12:07:00Z",
        "reason": "catchup",
        "policy": "all",
        "window_start": "2026-01-15T12:05:00Z",
        "catchup_max": 3,
    }


async def test_overlap_skip_buffer_and_close(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, "skip")
    await api.post(
        "/v1/schedules",
        json={
            "id": "buf1",
            "workflow_id": "wf",
            "spec": {"cron": ["* * * * *"]},
            "policy": {"overlap": "buffer_one"},
        },
    )
    await api.post(
        "/v1/schedules",
        json={
            "id": "bufall",
            "workflow_id": "wf",
            "spec": {"cron": ["* * * * *"]},
            "policy": {"overlap": "buffer_all", "buffer_max": 2},
        },
    )
    await api.post(
        "/v1/schedules",
        json={
            "id": "all",
            "workflow_id": "wf",
            "spec": {"cron": ["* * * * *"]},
            "policy": {"overlap": "allow_all"},
        },
    )
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    for _ in range(4):  # 12:01 .. 12:04; the 12:01 run never finishes
        clock.advance(MINUTE)
        await ticker.tick(0)
    assert len(await of_type(redis, keys, "skip", "FireSkipped")) == 3
    assert len(await of_type(redis, keys, "buf1", "FireDropped")) == 2
    assert len(await of_type(redis, keys, "bufall", "FireDropped")) == 1
    assert len(await of_type(redis, keys, "all", "RunQueued")) == 4
    held = [f for f in await of_type(redis, keys, "buf1", "ScheduleFired") if f["held"]]
    assert len(held) == 1
    # the running run closes: the held one starts right after, no earlier
    first = (await of_type(redis, keys, "buf1", "RunQueued"))[0]["run_id"]
    runs = RunStore(redis, keys)
    outcome, started = await runs.finish(
        0, "buf1", "schedule", first, outcome="succeeded", meta={}, now_ms=clock.now_ms()
    )
    assert outcome == "OK" and started == held[0]["run_id"]
    again, _ = await runs.finish(
        0, "buf1", "schedule", first, outcome="succeeded", meta={}, now_ms=clock.now_ms()
    )
    assert again == "DONE"  # a repeated completion changes nothing
    view = await (await api.get("/v1/schedules/skip")).json()
    assert view["info"]["overlap_skipped_count"] == 3
    assert len(view["info"]["running_runs"]) == 1
    view = await (await api.get("/v1/schedules/bufall")).json()
    assert view["info"]["buffer_dropped_count"] == 1


@pytest.mark.parametrize("policy", ["cancel_other", "terminate_other"])
async def test_cancel_and_terminate_other(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock, policy: str
) -> None:
    await setup(api, policy={"overlap": policy})
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    clock.advance(MINUTE)
    await ticker.tick(0)
    clock.advance(MINUTE)
    await ticker.tick(0)
    [old] = [q["run_id"] for q in await of_type(redis, keys, "s", "RunQueued")]
    [request] = await of_type(redis, keys, "s", "RunCancelRequested")
    assert request["run_id"] == old and request["terminate"] is (policy == "terminate_other")
    outcome, started = await RunStore(redis, keys).finish(
        0, "s", "schedule", old, outcome="cancelled", meta={}, now_ms=clock.now_ms()
    )
    assert outcome == "OK" and started == request["requested_by"]


async def test_max_actions_completes_the_schedule(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, target="none", max_actions=2)
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    for _ in range(4):
        clock.advance(MINUTE)
        await ticker.tick(0)
    assert len(await fired(redis, keys, "s")) == 2
    assert len(await of_type(redis, keys, "s", "ScheduleCompleted")) == 1
    view = await (await api.get("/v1/schedules/s")).json()
    assert view["status"] == "completed" and view["info"]["remaining_actions"] == 0
    assert view["next_run_times"] == []
    assert await redis.zscore(keys.due(0), "s") is None
    # a manual trigger still works and does not count
    r = await api.post("/v1/schedules/s/trigger", json={})
    assert r.status == 201


async def test_pause_and_resume_across_due_times(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, target="none")
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    clock.advance(30_000)
    await api.post("/v1/schedules/s/pause", json={"note": "window"})
    clock.advance(3 * MINUTE)  # 12:03:30
    await ticker.tick(0)
    await api.post("/v1/schedules/s/resume")
    await ticker.tick(0)
    clock.advance(30_000)  # 12:04:00
    await ticker.tick(0)
    assert await fired(redis, keys, "s") == ["2026-01-15T12:04:00Z"]
    assert await of_type(redis, keys, "s", "FiresMissed") == []
    r = await api.get(
        "/v1/schedules/s/fires",
        params={"from": "2026-01-15T12:01:00Z", "to": "2026-01-15T12:05:00Z"},
    )
    page = await r.json()
    assert r.status == 200, page
    outcomes = [(o["nominal_time"][11:16], o["outcome"]) for o in page["items"]]
    assert outcomes == [
        ("12:01", "paused"),
        ("12:02", "paused"),
        ("12:03", "paused"),
        ("12:04", "fired"),
        ("12:05", "scheduled"),
    ]


async def test_delete_and_update_racing_a_fire(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, target="none")
    await api.post(
        "/v1/schedules", json={"id": "u", "workflow_id": "wf", "spec": {"cron": ["* * * * *"]}}
    )
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    clock.advance(MINUTE)
    decided = []
    original = ticker.script.run_many

    async def race(requests):  # type: ignore[no-untyped-def]
        decided.extend(requests)
        # the commands land between the ticker's decision and its script call
        await api.delete("/v1/schedules/s")
        await api.patch("/v1/schedules/u", json={"spec": {"cron": ["*/5 * * * *"]}})
        return await original(requests)

    ticker.script.run_many = race  # type: ignore[method-assign]
    await ticker.tick(0)
    assert len(decided) == 2
    assert await fired(redis, keys, "s") == []  # no fire after a delete
    assert await fired(redis, keys, "u") == []  # no fire of the old spec after an update
    ticker.script.run_many = original  # type: ignore[method-assign]
    clock.advance(4 * MINUTE)  # 12:05
    await ticker.tick(0)
    assert await fired(redis, keys, "u") == ["2026-01-15T12:05:00Z"]
    assert await fired(redis, keys, "s") == []


async def test_a_fenced_holder_appends_nothing(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, target="none")
    old = await leader(redis, keys, clock)
    await old.tick(0)
    await redis.delete(keys.lease(0))  # the lease expires while the holder is stalled
    new = Ticker(redis, keys, clock=clock)
    assert await new.leases[0].acquire()
    assert new.leases[0].state.epoch == 2
    clock.advance(MINUTE)
    before = await redis.xlen(keys.log(0))
    await old.tick(0)  # still believes it holds the lease
    assert old.stats.fenced == 1 and not old.leases[0].held()
    assert await redis.xlen(keys.log(0)) == before
    await new.tick(0)
    fires = await of_type(redis, keys, "s", "ScheduleFired")
    assert [f["epoch"] for f in fires] == [2]


@pytest.mark.parametrize(
    ("after", "before", "expected"),
    [
        # spring forward in Berlin, 2026-03-29: 02:30 does not exist, runs once at 03:00
        (
            "2026-03-28T12:00:00Z",
            "2026-03-30T12:00:00Z",
            ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
        ),
        # fall back, 2026-10-25: 02:30 happens twice, runs at the first
        (
            "2026-10-24T12:00:00Z",
            "2026-10-26T12:00:00Z",
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
        ),
    ],
)
async def test_dst_days(
    api: TestClient,
    redis: Redis,
    keys: Keyspace,
    clock: FixedClock,
    after: str,
    before: str,
    expected: list[str],
) -> None:
    from service.domain.timeutil import parse_instant

    clock._now = parse_instant(after)
    await setup(api, target="none", spec={"cron": ["30 2 * * *"], "timezone": "Europe/Berlin"})
    ticker = await leader(redis, keys, clock)
    end = parse_instant(before)
    while clock.now_ms() < end:
        clock.advance(15 * MINUTE)
        await ticker.tick(0)
    assert await fired(redis, keys, "s") == expected


async def test_trigger_and_backfill(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, target="none", max_actions=1)
    await api.post("/v1/schedules/s/pause")
    one = await api.post("/v1/schedules/s/trigger", json={"input": {"x": 1}})
    two = await api.post("/v1/schedules/s/trigger", json={})  # same instant: another run
    a, b = await one.json(), await two.json()
    assert one.status == 201 and two.status == 201 and a["run_id"] != b["run_id"]
    keyed = [
        await api.post("/v1/schedules/s/trigger", json={}, headers={"Idempotency-Key": "t-1"})
        for _ in range(2)
    ]
    bodies = [await r.json() for r in keyed]
    assert bodies[0]["run_id"] == bodies[1]["run_id"] and bodies[1]["duplicate"]
    assert len(await fired(redis, keys, "s", "api")) == 3
    queued = await of_type(redis, keys, "s", "RunQueued")
    assert queued[0]["input"] == {"x": 1} and queued[0]["trigger"]["type"] == "api"
    r = await api.post(
        "/v1/schedules/s/backfill",
        json={"start": "2026-01-14T00:00:00Z", "end": "2026-01-14T00:09:59Z"},
    )
    assert (await r.json()) == {
        "nominal_times": 10,
        "fired": 10,
        "skipped": 0,
        "dropped": 0,
        "already_backfilled": 0,
    }
    again = await api.post(
        "/v1/schedules/s/backfill",
        json={"start": "2026-01-14T00:00:00Z", "end": "2026-01-14T00:09:59Z"},
    )
    assert (await again.json())["already_backfilled"] == 10
    assert len(await fired(redis, keys, "s", "backfill")) == 10
    view = await (await api.get("/v1/schedules/s")).json()
    assert view["info"]["action_count"] == 0  # manual and backfill runs do not count


async def test_trigger_and_backfill_errors(api: TestClient) -> None:
    await setup(api, target="none")
    from tests.integration.api.helpers import problem

    await problem(await api.post("/v1/schedules/nope/trigger", json={}), 404)
    err = await problem(await api.post("/v1/schedules/s/trigger", json={"overlap": "x"}), 422)
    assert err["errors"][0]["field"] == "overlap"
    err = await problem(
        await api.post(
            "/v1/schedules/s/backfill",
            json={"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        ),
        422,
    )
    assert err["errors"][0]["field"] == "end"
    err = await problem(
        await api.post(
            "/v1/schedules/s/backfill",
            json={"start": "2025-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        ),
        422,
    )
    assert "more than" in err["errors"][0]["message"]
    err = await problem(await api.get("/v1/schedules/s/fires", params={"from": "x"}), 422)
    assert err["errors"][0]["field"] == "from"


async def test_a_timed_out_fire_retried_by_the_client_fires_once(
    api: TestClient, redis: Redis, redis_url: str, keys: Keyspace, clock: FixedClock
) -> None:
    """A stalled Redis, a short socket timeout and client retries: one fire."""
    import asyncio

    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    await setup(api, target="none")
    slow = Redis.from_url(
        redis_url, socket_timeout=0.05, retry=Retry(NoBackoff(), 5), retry_on_timeout=True
    )
    try:
        ticker = Ticker(slow, keys, clock=clock)
        assert await ticker.leases[0].acquire()
        await ticker.tick(0)
        await redis.script_load(ticker.script._script.script)
        clock.advance(MINUTE)
        stall = asyncio.create_task(
            redis.eval(
                "local t = redis.call('TIME'); local s = t[1] * 1000000 + t[2]; "
                "while true do local n = redis.call('TIME'); "
                "if n[1] * 1000000 + n[2] - s > 200000 then break end end; return 1",
                0,
            )
        )
        await asyncio.sleep(0.02)  # let the stall start first (not a wait for a condition)
        try:
            await ticker.tick(0)
        finally:
            await stall
        for _ in range(20):
            await redis.ping()
        assert await fired(redis, keys, "s") == ["2026-01-15T12:01:00Z"]
    finally:
        await slow.aclose()


async def test_a_last_action_skipped_by_overlap_leaves_the_schedule_due(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, target="http", max_actions=2)  # overlap: skip
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    clock.advance(MINUTE)
    await ticker.tick(0)  # 12:01 fires; its run keeps running
    clock.advance(MINUTE)
    await ticker.tick(0)  # 12:02 would be the last action, but is skipped
    assert len(await of_type(redis, keys, "s", "FireSkipped")) == 1
    assert await redis.zscore(keys.due(0), "s") is not None
    [run] = [m.decode() for m in await redis.smembers(keys.running(0, "s"))]
    await RunStore(redis, keys).finish(
        0, "s", "schedule", run, outcome="succeeded", meta={}, now_ms=clock.now_ms()
    )
    clock.advance(MINUTE)
    await ticker.tick(0)  # 12:03: the second action completes the schedule
    assert await fired(redis, keys, "s") == ["2026-01-15T12:01:00Z", "2026-01-15T12:03:00Z"]
    assert len(await of_type(redis, keys, "s", "ScheduleCompleted")) == 1
