"""Events written in an old shape read as the current one: store, views, replay, history."""

from __future__ import annotations

import orjson
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from projections.projector import Projector
from service.audit.history import audit
from service.audit.replay import Point, replay
from service.domain.schedule import SchedulePaused
from service.domain.upcasters import schedule_paused_v1_to_v2, upcast
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from tests.integration.api.helpers import create_schedule, put_workflow


def test_the_current_pause_event_is_v2() -> None:
    assert SchedulePaused.version == 2
    assert set(SchedulePaused().data()) == {"note", "cause", "run_id"}


def test_v1_pauses_get_a_cause() -> None:
    assert schedule_paused_v1_to_v2({"note": "upgrade"}) == {
        "note": "upgrade",
        "cause": "manual",
        "run_id": None,
    }
    assert schedule_paused_v1_to_v2({"note": "paused after run run_42 failed"}) == {
        "note": "paused after run run_42 failed",
        "cause": "run_failed",
        "run_id": "run_42",
    }
    assert upcast("SchedulePaused", 1, {}) == (2, {"cause": "manual", "run_id": None})
    # v2 payloads and other types pass through unchanged
    assert upcast("SchedulePaused", 2, {"note": "x"}) == (2, {"note": "x"})
    assert upcast("ScheduleResumed", 1, {"note": "x"}) == (1, {"note": "x"})
    # the model accepts the upcast payload
    SchedulePaused.model_validate(schedule_paused_v1_to_v2({"note": "n"}))


async def write_v1_pause(redis: Redis, keys: Keyspace, sid: str, note: str) -> str:
    """XADD a SchedulePaused exactly as a v1 build wrote it."""
    eid = await redis.xadd(
        keys.log(keys.partition_of(sid)),
        {
            "type": "SchedulePaused",
            "v": "1",
            "sid": sid,
            "data": orjson.dumps({"note": note}),
            "meta": orjson.dumps({"actor": "worker:old"}),
        },
    )
    await redis.rpush(keys.aggregate_events(keys.partition_of(sid), "schedule", sid), eid)
    return eid.decode()


async def test_old_events_read_through_the_store_views_replay_and_history(
    api: TestClient, redis: Redis, keys: Keyspace
) -> None:
    await put_workflow(api)
    await create_schedule(api)
    position = await write_v1_pause(redis, keys, "nightly", "paused after run run_7 failed")

    events = await EventStore(redis, keys).read(0, "0-0", 10)
    (event,) = [e for e in events if e.position == position]
    assert event.v == 2
    assert event.data == {
        "note": "paused after run run_7 failed",
        "cause": "run_failed",
        "run_id": "run_7",
    }

    await Projector(redis, keys).catch_up(0)
    view = await (await api.get("/v1/schedules/nightly")).json()
    assert view["status"] == "paused" and view["note"] == "paused after run run_7 failed"

    result = await replay(redis, keys, Point(), schedule_id="nightly")
    record = result.schedule("nightly")
    assert record is not None and record["status"] == "paused"

    items = await audit(redis, keys, "nightly")
    assert items[-1]["v"] == 2 and items[-1]["trigger"] == "run_failed"
    assert items[-1]["changes"] == {"status": {"from": "active", "to": "paused"}}

    page = await (await api.get("/v1/schedules/nightly/history")).json()
    assert page["items"][-1]["data"]["run_id"] == "run_7"

    feed = await (await api.get("/v1/events")).json()
    assert feed["items"][-1]["v"] == 2


async def test_new_pauses_are_written_as_v2(api: TestClient, redis: Redis, keys: Keyspace) -> None:
    await put_workflow(api)
    await create_schedule(api)
    await api.post("/v1/schedules/nightly/pause", json={"note": "n"})
    ((_eid, fields),) = await redis.xrevrange(keys.log(0), count=1)
    assert fields[b"type"] == b"SchedulePaused" and fields[b"v"] == b"2"
    assert orjson.loads(fields[b"data"]) == {"note": "n", "cause": "manual", "run_id": None}
