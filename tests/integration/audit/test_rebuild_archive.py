"""Rebuilding the views of a trimmed log needs the archive, and then gives the same views."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from projections.rebuild import LogTrimmed, rebuild, shadow_rebuild
from service.audit.archive import archive
from service.clock import FixedClock
from service.store.keys import Keyspace
from tests.integration.audit.helpers import caught_up, dump, scripted_history


async def test_a_trimmed_log_rebuilds_only_with_its_archive(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock, tmp_path: Path
) -> None:
    await scripted_history(api, redis, keys, clock)
    await caught_up(redis, keys)
    # some events after the archived ones, so the views need both
    r = await api.post("/v1/schedules/a/pause", json={"note": "after the archive"})
    assert r.status == 200
    await caught_up(redis, keys)
    live = await dump(redis, "cs:{0}:view:*")
    first_live = (await redis.xrevrange(keys.log(0), count=1))[0][0].decode()
    cut = int(first_live.split("-")[0])  # everything older than the newest entry
    report = await archive(redis, keys, cut, tmp_path)
    assert report.entries > 0 and await redis.xlen(keys.log(0)) >= 1

    with pytest.raises(LogTrimmed, match="--archive"):
        await rebuild(redis, keys)
    with pytest.raises(LogTrimmed):
        await shadow_rebuild(redis, keys, True)
    assert await dump(redis, "cs:{0}:view:*") == live  # refused before touching anything

    rebuilt = await rebuild(redis, keys, archive_dir=tmp_path)
    assert rebuilt.events >= report.entries
    assert await dump(redis, "cs:{0}:view:*") == live
    # the live projector carries on after the switch
    r = await api.post("/v1/schedules/a/resume", json={})
    assert r.status == 200
    started = time.monotonic()
    await caught_up(redis, keys)
    assert time.monotonic() - started < 10
    view = await (await api.get("/v1/schedules/a")).json()
    assert view["status"] == "active" and view["version"] >= 3
