"""After an archive run, the API's readers of history find trimmed events in the archive
the run recorded (no setting needed), and say so clearly when it cannot be read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api.app import create_app
from service.audit.archive import archive
from service.clock import FixedClock
from service.config import Settings
from service.store.archive_record import read_record
from service.store.keys import Keyspace
from tests.integration.api.helpers import create_schedule, problem, put_workflow
from tests.integration.api.test_stream import collect
from tests.integration.audit.helpers import caught_up
from tests.integration.ticker.helpers import MINUTE, leader, setup

FIRES = {"from": "2026-01-15T12:00:00Z", "to": "2026-01-15T12:10:00Z"}
AT = {"at": "2026-01-15T12:02:30Z"}


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


@dataclass
class Archived:
    """A schedule's answers read before the archive run, and where the run archived."""

    api: TestClient
    directory: Path
    before: dict[str, Any]
    trimmed_below: str


async def answers(api: TestClient) -> dict[str, Any]:
    """What each reader of history answers (status and body)."""
    out: dict[str, Any] = {}
    for name, path, params in (
        ("history", "/v1/schedules/s/history", {}),
        ("paged history", "/v1/schedules/s/history", {"cursor": "2", "limit": "3"}),
        ("at", "/v1/schedules/s", AT),
        ("fires", "/v1/schedules/s/fires", FIRES),
        ("feed", "/v1/events", {}),
        ("feed page", "/v1/events", {"limit": "3"}),
    ):
        r = await api.get(path, params=params)
        out[name] = (r.status, await r.json())
    return out


@pytest.fixture
async def archived(
    redis: Redis, settings: Settings, keys: Keyspace, clock: FixedClock, tmp_path: Path
) -> AsyncIterator[Archived]:
    """A schedule created, fired, changed and paused, all but its last events archived
    and trimmed by an API that was told nothing about the archive."""
    assert settings.archive_dir is None
    app = create_app(settings, redis, clock=clock)
    async with TestClient(TestServer(app, host="127.0.0.1")) as api:
        await setup(api, target="none")
        ticker = await leader(redis, keys, clock)
        for _ in range(3):
            clock.advance(MINUTE)
            await ticker.tick(0)
        r = await api.patch("/v1/schedules/s", json={"spec": {"cron": ["*/2 * * * *"]}})
        assert r.status == 200, await r.text()
        clock.advance(MINUTE)
        await api.post("/v1/schedules/s/pause", json={"note": "upgrade"})
        await caught_up(redis, keys)
        before = await answers(api)
        newest = (await redis.xrevrange(keys.log(0), count=1))[0][0].decode()
        report = await archive(redis, keys, int(newest.split("-")[0]), tmp_path / "archive")
        assert report.entries > 8 and await redis.xlen(keys.log(0)) <= 2
        record = await read_record(redis, keys, 0)
        assert record is not None and record.directory == tmp_path / "archive"
        yield Archived(api, tmp_path / "archive", before, record.before)


async def test_every_reader_finds_the_recorded_archive(archived: Archived) -> None:
    before = archived.before
    assert before["history"][1]["items"][0]["type"] == "ScheduleCreated"
    assert [f["outcome"] for f in before["fires"][1]["items"]].count("fired") == 3
    assert before["at"][1]["status"] == "active"
    assert await answers(archived.api) == before


async def test_feed_pages_cross_from_the_archive_into_the_log(
    archived: Archived, redis: Redis, keys: Keyspace
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        r = await archived.api.get("/v1/events", params={"limit": "4", "after": cursor or ""})
        assert r.status == 200, await r.text()
        page = await r.json()
        seen += [item["position"] for item in page["items"]]
        if not page["items"]:
            break
        cursor = page["next"]
    assert seen == [item["position"] for item in archived.before["feed"][1]["items"]]
    assert len(seen) == len(set(seen)) > int(await redis.xlen(keys.log(0)))


async def test_a_moved_archive_is_a_clear_problem_for_every_reader(archived: Archived) -> None:
    archived.directory.rename(archived.directory.with_name("moved"))
    for name, (status, _) in (await answers(archived.api)).items():
        assert status == 503, name
    for path, params in (
        ("/v1/schedules/s/history", {}),
        ("/v1/schedules/s", AT),
        ("/v1/schedules/s/fires", FIRES),
        ("/v1/events", {}),
    ):
        body = await problem(await archived.api.get(path, params=params), 503)
        assert body["detail"].startswith(
            f"events of partition 0 before position {archived.trimmed_below} are archived at "
            f"{archived.directory}, which cannot be read: no such directory"
        ), path
        assert body["archived_before"] == archived.trimmed_below
        assert body["archive_dir"] == str(archived.directory)
    # what needs nothing archived still answers
    assert (await archived.api.get("/v1/schedules/s")).status == 200
    last = await archived.api.get("/v1/events", params={"after": archived.trimmed_below})
    assert last.status == 200, await last.text()


async def test_the_setting_overrides_the_recorded_archive(
    archived: Archived, redis: Redis, settings: Settings, clock: FixedClock
) -> None:
    copy = archived.directory.rename(archived.directory.with_name("copy"))
    app = create_app(replace(settings, archive_dir=copy), redis, clock=clock)
    async with TestClient(TestServer(app, host="127.0.0.1")) as api:
        assert await answers(api) == archived.before


async def test_a_log_trimmed_without_a_record_is_a_problem(
    archived: Archived, redis: Redis, keys: Keyspace
) -> None:
    await redis.delete(keys.archived(0))  # trimmed by an older version, which kept no record
    for path, params in (("/v1/schedules/s/history", {}), ("/v1/events", {})):
        body = await problem(await archived.api.get(path, params=params), 503)
        assert "were archived and trimmed from the log" in body["detail"], path
        assert "CRONSTREAM_ARCHIVE_DIR" in body["detail"]
        assert body["archive_dir"] is None


async def test_the_event_stream_starts_in_the_archive(archived: Archived) -> None:
    expected = [item["position"] for item in archived.before["feed"][1]["items"]]
    resp = await archived.api.get("/v1/events/stream")
    assert resp.status == 200, await resp.text()
    try:
        seen = [m["id"] for m in await collect(resp, len(expected))]
    finally:
        resp.close()
    assert seen == expected


async def test_an_event_stream_from_a_moved_archive_is_a_problem(archived: Archived) -> None:
    archived.directory.rename(archived.directory.with_name("moved"))
    body = await problem(await archived.api.get("/v1/events/stream"), 503)
    assert body["archived_before"] == archived.trimmed_below
