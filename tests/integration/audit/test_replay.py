"""Point-in-time replay equals the view that was live at that point.

A scripted history (create, fires through the ticker, update, pause, resume, a
manual trigger, a second schedule, delete) is recorded step by step through the
live API; then the schedule is replayed from the log at each recorded position
and instant and compared with what was recorded.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.api import render
from service.audit.replay import Point, event_time, position_point, replay
from service.clock import FixedClock
from service.domain.timeutil import to_rfc3339
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from tests.integration.ticker.helpers import MINUTE, leader, setup

DEADLINE_S = 10.0
# next_run_at / next_run_times are computed from the time of reading: a replay by
# position renders them at the time of the last event it folded, the live API at
# its clock's now. Those two fields are the only ones set aside (and only there).
READ_TIME_FIELDS = ("next_run_at", "next_run_times")


@dataclass
class Recorded:
    step: str
    position: str
    now: int
    status: int
    body: Any


async def caught_up(redis: Redis, keys: Keyspace) -> str:
    """Wait until the live projector has applied the whole log; return its last position."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        last = await redis.xrevrange(keys.log(0), count=1)
        at = await redis.hget(keys.checkpoint(0), "position")
        if last and at == last[0][0]:
            return str(at.decode())
        assert time.monotonic() < deadline, "the projector did not catch up"
        await asyncio.sleep(0.005)


async def record(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock, step: str, sid: str = "s"
) -> Recorded:
    position = await caught_up(redis, keys)
    r = await api.get(f"/v1/schedules/{sid}")
    return Recorded(step, position, clock.now_ms(), r.status, await r.json())


def without(body: Any, fields: tuple[str, ...]) -> Any:
    return {k: v for k, v in body.items() if k not in fields} if isinstance(body, dict) else body


async def scripted(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> list[Recorded]:
    out = []
    await setup(api, target="none", tags=["red"], note="first")
    out.append(await record(api, redis, keys, clock, "created"))
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    for _ in range(2):
        clock.advance(MINUTE)
        await ticker.tick(0)
        out.append(await record(api, redis, keys, clock, "fired"))
    r = await api.patch(
        "/v1/schedules/s",
        json={"spec": {"cron": ["*/2 * * * *"], "timezone": "Europe/Berlin"}, "tags": ["blue"]},
    )
    assert r.status == 200, await r.text()
    out.append(await record(api, redis, keys, clock, "updated"))
    clock.advance(MINUTE)
    await api.post("/v1/schedules/s/pause", json={"note": "maintenance"})
    out.append(await record(api, redis, keys, clock, "paused"))
    clock.advance(5 * MINUTE)
    await ticker.tick(0)  # paused: nothing fires
    await api.post("/v1/schedules/s/resume", json={"note": "done"})
    out.append(await record(api, redis, keys, clock, "resumed"))
    clock.advance(2 * MINUTE)
    await ticker.tick(0)
    out.append(await record(api, redis, keys, clock, "fired after resume"))
    r = await api.post("/v1/schedules/s/trigger", json={})
    assert r.status in (200, 201, 202), await r.text()
    out.append(await record(api, redis, keys, clock, "triggered"))
    clock.advance(MINUTE)
    r = await api.post(
        "/v1/schedules", json={"id": "other", "workflow_id": "wf", "spec": {"cron": ["0 * * * *"]}}
    )
    assert r.status == 201
    out.append(await record(api, redis, keys, clock, "another schedule"))
    clock.advance(MINUTE)
    assert (await api.delete("/v1/schedules/s")).status == 204
    out.append(await record(api, redis, keys, clock, "deleted"))
    return out


async def test_replay_by_position_equals_the_view_live_then(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    steps = await scripted(api, redis, keys, clock)
    assert [s.status for s in steps] == [200] * (len(steps) - 1) + [404]
    assert steps[2].body["info"]["action_count"] == 2  # the script did fire
    assert steps[6].body["info"]["action_count"] == 3
    for step in steps:
        # through the API: everything but the read-time fields
        r = await api.get("/v1/schedules/s", params={"position": step.position})
        assert r.status == step.status, step.step
        if step.status == 200:
            body = await r.json()
            assert without(body, READ_TIME_FIELDS) == without(step.body, READ_TIME_FIELDS), (
                step.step
            )
            assert r.headers["ETag"] == f'"{step.body["version"]}"'
        # from the log, rendered at the recording's now: every field
        result = await replay(redis, keys, position_point(step.position, keys), schedule_id="s")
        record_ = result.schedule("s")
        if step.status == 404:
            assert record_ is None
        else:
            assert record_ is not None
            assert render.schedule(record_, step.now) == step.body, step.step


async def test_replay_of_every_schedule_equals_the_live_list(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    steps = await scripted(api, redis, keys, clock)
    before_delete = steps[-2]
    result = await replay(redis, keys, position_point(before_delete.position, keys))
    assert [r["id"] for r in result.live_schedules()] == ["other", "s"]
    result = await replay(redis, keys, Point())  # the whole log: now
    listed = (await (await api.get("/v1/schedules")).json())["items"]
    now = clock.now_ms()
    assert [render.schedule(r, now) for r in result.live_schedules()] == listed


async def test_before_creation_there_is_nothing(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, target="none")
    r = await api.get("/v1/schedules/s", params={"at": "2020-01-01T00:00:00Z"})
    assert r.status == 404
    r = await api.get("/v1/schedules/s", params={"position": "1-0"})
    assert r.status == 404


async def test_bad_points_are_problems(api: TestClient) -> None:
    await setup(api, target="none")
    for params, field in (
        ({"at": "yesterday"}, "at"),
        ({"position": "x-y"}, "position"),
        ({"at": "2026-01-15T12:00:00Z", "position": "1-0"}, "at"),
    ):
        r = await api.get("/v1/schedules/s", params=params)
        assert r.status == 422, params
        assert (await r.json())["errors"][0]["field"] == field


class TrackingClock(FixedClock):
    """A fixed clock moved, between steps, to the real time (so command times and
    append times increase together along the log)."""

    async def catch_up(self, after_ms: int) -> None:
        """Wait until the real time is past ``after_ms``, then move to it."""
        deadline = time.monotonic() + DEADLINE_S
        while time.time_ns() // 1_000_000 <= after_ms:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
        self.advance(time.time_ns() // 1_000_000 - self.now_ms())


async def latest_time(redis: Redis, keys: Keyspace) -> int:
    events = await EventStore(redis, keys).read(0, "0-0", 10_000)
    return max(event_time(e) for e in events)


async def test_replay_at_an_instant_equals_the_view_live_then(
    redis: Redis, keys: Keyspace, settings: Any
) -> None:
    from aiohttp.test_utils import TestServer

    from service.api.app import create_app

    clock = TrackingClock(time.time_ns() // 1_000_000)
    api = TestClient(TestServer(create_app(settings, redis, clock=clock), host="127.0.0.1"))
    await api.start_server()
    try:
        recorded: list[tuple[int, int, Any]] = []

        async def snapshot() -> None:
            await caught_up(redis, keys)
            moment = await latest_time(redis, keys)
            clock.advance(moment - clock.now_ms())  # the live view, read at that instant
            r = await api.get("/v1/schedules/s")
            recorded.append((moment, r.status, await r.json()))
            await clock.catch_up(moment)

        every_second = {"cron": ["* * * * * *"]}
        await setup(api, target="none", spec=every_second)
        await snapshot()
        ticker = await leader(redis, keys, clock)
        await clock.catch_up(clock.now_ms() // 1000 * 1000 + 1000)  # into the next second
        await ticker.tick(0)
        await snapshot()
        await api.post("/v1/schedules/s/pause", json={"note": "x"})
        await snapshot()
        await api.patch(
            "/v1/schedules/s", json={"name": "renamed", "spec": {"cron": ["0 3 * * *"]}}
        )
        await snapshot()
        await api.post("/v1/schedules/s/resume")
        await snapshot()
        await api.post("/v1/schedules/s/trigger", json={})
        await snapshot()
        await api.delete("/v1/schedules/s")
        await snapshot()
        assert recorded[1][2]["info"]["action_count"] == 1
        for moment, status, body in recorded:
            at = to_rfc3339(moment)
            r = await api.get("/v1/schedules/s", params={"at": at})
            assert r.status == status, at
            if status == 200:
                assert await r.json() == body, at  # every field, next runs included
        first = recorded[0][0]
        r = await api.get("/v1/schedules/s", params={"at": to_rfc3339(first - 1)})
        assert r.status == 404
    finally:
        await api.close()
