"""Schedule view records stored compact: the API renders them as it rendered whole ones."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from projections import records
from projections.rebuild import shadow_rebuild
from service.store.keys import Keyspace
from tests.integration.api.helpers import SPEC, create_schedule, put_workflow
from tests.integration.projections.test_shadow import caught_up

EVERY_FIELD: dict[str, Any] = {
    "name": "Nightly scan",
    "description": "scans the disks",
    "tags": ["team-a", "prod"],
    "input": {"depth": 2, "deep": False, "none": None},
    "max_actions": 5,
    "spec": {
        **SPEC,
        "intervals": [{"every": "1h", "offset": "5m"}],
        "exclude_cron": ["0 2 25 12 *"],
        "jitter": "10s",
        "start_at": "2026-01-01T00:00:00Z",
        "end_at": "2027-01-01T00:00:00Z",
    },
    "policy": {
        "overlap": "buffer_one",
        "catchup": "all",
        "catchup_window": "2h",
        "catchup_max": 3,
        "buffer_max": 2,
        "pause_on_failure": True,
    },
}


async def stored(redis: Redis, keys: Keyspace, sid: str) -> bytes:
    raw = await redis.get(keys.view(0, f"schedule:{sid}"))
    assert isinstance(raw, bytes)
    return raw


async def responses(api: TestClient) -> list[bytes]:
    paths = ["/v1/schedules/plain", "/v1/schedules/full", "/v1/schedules?limit=10"]
    out = []
    for path in paths:
        r = await api.get(path)
        assert r.status == 200, await r.text()
        out.append(await r.read())
    return out


async def test_an_idle_schedules_view_record_is_stored_compact(
    api: TestClient, redis: Redis, keys: Keyspace
) -> None:
    await put_workflow(api)
    await create_schedule(api, "plain")
    raw = await stored(redis, keys, "plain")
    # whole, with every default, this record is some 700 bytes
    assert len(raw) <= 220, raw
    record = records.decode("schedule:plain", raw)
    assert record["spec"] == {**records.SCHEDULE_RECORD_V1["spec"], **SPEC}
    assert record["info"] == records.SCHEDULE_RECORD_V1["info"] and record["divergence"] == {}


async def test_the_api_renders_a_compact_record_as_it_rendered_the_whole_one(
    api: TestClient, redis: Redis, keys: Keyspace
) -> None:
    await put_workflow(api)
    await create_schedule(api, "plain")
    await create_schedule(api, "full", **EVERY_FIELD)
    r = await api.post("/v1/schedules/full/pause", json={"note": "held"})
    assert r.status == 200, await r.text()
    compact = await responses(api)
    for sid in ("plain", "full"):
        raw = await stored(redis, keys, sid)
        assert orjson.loads(raw)["f"] == 1
        whole = records.decode(f"schedule:{sid}", raw)
        # as the projector wrote it before: every field, keys sorted
        await redis.set(
            keys.view(0, f"schedule:{sid}"), orjson.dumps(whole, option=orjson.OPT_SORT_KEYS)
        )
    assert await responses(api) == compact


async def test_a_shadow_rebuild_finds_no_difference_in_records_stored_whole_before(
    api: TestClient, redis: Redis, keys: Keyspace
) -> None:
    await put_workflow(api)
    await create_schedule(api, "plain")
    await create_schedule(api, "full", **EVERY_FIELD)
    await caught_up(redis, keys)
    for sid in ("plain", "full"):
        whole = records.decode(f"schedule:{sid}", await stored(redis, keys, sid))
        await redis.set(
            keys.view(0, f"schedule:{sid}"), orjson.dumps(whole, option=orjson.OPT_SORT_KEYS)
        )
    report = await shadow_rebuild(redis, keys, switch=False)
    assert report.empty, report.summary()


def test_a_record_with_every_field_set_decodes_to_the_same_json() -> None:
    record: dict[str, Any] = {
        "id": "s1",
        **{key: value for key, value in EVERY_FIELD.items() if key != "spec"},
        "spec": {**records.SCHEDULE_RECORD_V1["spec"], **EVERY_FIELD["spec"]},
        "status": "paused",
        "note": "held",
        "version": 4,
        "created_at": 1,
        "updated_at": 2,
        "deleted": False,
        "position": "2-0",
        "paused_by_failure": True,
        "managed": {"by": "apply", "source": "a.yaml"},
        "declared": {"name": "", "paused": False},
        "divergence": {"name": {"file": "", "live": "Nightly scan"}},
        "info": {
            **records.SCHEDULE_RECORD_V1["info"],
            "action_count": 1,
            "recent_actions": [{"nominal_time": 5, "outcome": "skipped"}],
            "last_run_status": "succeeded",
        },
    }
    whole = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    stored = records.encode("schedule:s1", record)
    # the decoded record's keys come in the order the whole one was written in
    assert orjson.dumps(records.decode("schedule:s1", stored)) == whole
    assert records.decode("schedule:s1", whole) == record  # written before: read as it is
    # a value equal to its default in Python only (0 for False) is kept
    zero = {**record, "deleted": 0}
    assert orjson.loads(records.encode("schedule:s1", zero))["deleted"] == 0


def test_records_of_other_kinds_are_stored_whole() -> None:
    run = {"id": "r1", "status": "queued", "deleted": False, "info": {}}
    assert orjson.loads(records.encode("run:r1", run)) == run
    assert records.decode("workflow:w", b'{"f":1,"name":""}') == {"f": 1, "name": ""}
