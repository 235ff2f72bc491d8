"""``/v1/schedules/{id}/fires`` says exactly why a time did not run, from the log."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.clock import FixedClock
from service.store.keys import Keyspace
from service.store.runs import RunStore
from tests.integration.ticker.helpers import MINUTE, leader, of_type, setup


async def outcomes(api: TestClient, start: str, end: str, sid: str = "s") -> list[Any]:
    """(HH:MM, outcome, reason) of every time in [start, end] (times of 2026-01-15)."""
    r = await api.get(
        f"/v1/schedules/{sid}/fires",
        params={"from": f"2026-01-15T{start}:00Z", "to": f"2026-01-15T{end}:00Z"},
    )
    page = await r.json()
    assert r.status == 200, page
    return [
        (o["nominal_time"][11:16], o["outcome"], o["detail"].get("reason")) for o in page["items"]
    ]


async def minutes(ticker: Any, clock: FixedClock, count: int) -> None:
    await ticker.tick(0)
    for _ in range(count):
        clock.advance(MINUTE)
        await ticker.tick(0)


async def test_missed_times_say_which_catch_up_rule_left_them_out(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, target="none", policy={"catchup": "latest", "catchup_window": "5m"})
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    clock.advance(10 * MINUTE + 30_000)  # down until 12:10:30: the window starts at 12:05:30
    await ticker.tick(0)
    outside, latest = "outside catch-up window", "catch-up policy latest"
    assert await outcomes(api, "12:01", "12:10") == [
        *[(f"12:0{m}", "missed", outside) for m in range(1, 6)],
        *[(f"12:0{m}", "missed", latest) for m in range(6, 10)],
        ("12:10", "fired", None),
    ]


async def test_catch_up_all_beyond_catchup_max_and_its_waiting_runs(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, policy={"catchup": "all", "catchup_max": 3})  # target http
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    clock.advance(6 * MINUTE)
    await ticker.tick(0)
    first, second, _ = [f["run_id"] for f in await of_type(redis, keys, "s", "ScheduleFired")]
    beyond = "catch-up policy all: more than catchup_max (3) due"
    waits = "held until run {} ends (the previous time of its catch-up)"
    assert await outcomes(api, "12:01", "12:06") == [
        *[(f"12:0{m}", "missed", beyond) for m in range(1, 4)],
        ("12:04", "fired", None),
        ("12:05", "pending", waits.format(first)),
        ("12:06", "pending", waits.format(second)),
    ]
    runs = RunStore(redis, keys)
    await runs.finish(0, "s", "schedule", first, outcome="succeeded", meta={}, now_ms=1)
    assert (await outcomes(api, "12:05", "12:06"))[0] == ("12:05", "fired", None)


async def test_overlap_outcomes_name_the_run_or_the_buffer(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, policy={"overlap": "buffer_one"})
    await api.post(
        "/v1/schedules", json={"id": "k", "workflow_id": "wf", "spec": {"cron": ["* * * * *"]}}
    )
    ticker = await leader(redis, keys, clock)
    await minutes(ticker, clock, 3)  # 12:01 runs on; 12:02 and 12:03 come meanwhile
    [running] = [q["run_id"] for q in await of_type(redis, keys, "k", "RunQueued")]
    assert await outcomes(api, "12:01", "12:03", sid="k") == [
        ("12:01", "fired", None),
        ("12:02", "skipped", f"overlap with run {running}"),
        ("12:03", "skipped", f"overlap with run {running}"),
    ]
    assert await outcomes(api, "12:01", "12:03") == [
        ("12:01", "fired", None),
        ("12:02", "pending", "held in buffer"),
        ("12:03", "dropped", "buffer full"),
    ]
    held = [f["run_id"] for f in await of_type(redis, keys, "s", "ScheduleFired") if f["held"]]
    await RunStore(redis, keys).cancel(
        0, "s", "schedule", held[0], terminate=False, actor="cli:me", now_ms=1
    )
    assert (await outcomes(api, "12:02", "12:02"))[0] == (
        "12:02",
        "cancelled",
        "cancelled before it ran: cancelled by cli:me",
    )


async def test_a_backfill_says_why_it_did_not_run_a_time_until_it_does(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api)  # overlap: skip
    running = (await (await api.post("/v1/schedules/s/trigger", json={})).json())["run_id"]
    window = {"start": "2026-01-15T11:00:00Z", "end": "2026-01-15T11:01:00Z"}
    await api.post("/v1/schedules/s/backfill", json=window)
    overlap = f"overlap with run {running}"
    assert await outcomes(api, "11:00", "11:01") == [
        ("11:00", "skipped", overlap),
        ("11:01", "skipped", overlap),
    ]
    r = await api.post("/v1/schedules/s/backfill", json={**window, "overlap": "allow_all"})
    assert (await r.json())["fired"] == 2
    assert await outcomes(api, "11:00", "11:01") == [
        ("11:00", "backfilled", None),
        ("11:01", "backfilled", None),
    ]
