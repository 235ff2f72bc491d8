"""With CRONSTREAM_ARCHIVE_DIR set, the API's history and replay read trimmed events too."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api.app import create_app
from service.audit.archive import archive
from service.clock import FixedClock
from service.config import Settings
from service.store.keys import Keyspace
from tests.integration.api.helpers import create_schedule, put_workflow
from tests.integration.audit.helpers import caught_up


async def test_history_and_replay_include_archived_events(
    redis: Redis, settings: Settings, keys: Keyspace, clock: FixedClock, tmp_path: Path
) -> None:
    app = create_app(replace(settings, archive_dir=tmp_path), redis, clock=clock)
    async with TestClient(TestServer(app, host="127.0.0.1")) as api:
        await put_workflow(api)
        await create_schedule(api)
        await api.patch("/v1/schedules/nightly", json={"name": "renamed"})
        await api.post("/v1/schedules/nightly/pause", json={"note": "before the archive"})
        await caught_up(redis, keys)
        history = await (await api.get("/v1/schedules/nightly/history")).json()
        paused_at = history["items"][-1]["position"]
        await api.post("/v1/schedules/nightly/resume", json={})
        await caught_up(redis, keys)
        newest = (await redis.xrevrange(keys.log(0), count=1))[0][0].decode()
        report = await archive(redis, keys, int(newest.split("-")[0]), tmp_path)
        assert report.entries >= 4  # everything but the newest entry left the log
        assert await redis.xlen(keys.log(0)) == 1

        after = await (await api.get("/v1/schedules/nightly/history")).json()
        assert [i["type"] for i in after["items"]] == [
            "ScheduleCreated",
            "ScheduleUpdated",
            "SchedulePaused",
            "ScheduleResumed",
        ]
        assert after["items"][1]["changes"]["name"] == {"from": "", "to": "renamed"}
        r = await api.get("/v1/schedules/nightly", params={"position": paused_at})
        then = await r.json()
        assert r.status == 200, then
        assert then["status"] == "paused" and then["name"] == "renamed"
