"""Archive and trim: only what every consumer has passed; read archive plus log."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.audit.archive import archive
from service.audit.restore import RestoreRefused, restore
from service.audit.verify import verify
from service.clock import FixedClock
from service.store import segments
from service.store.archive_reader import read_all, read_archive
from service.store.keys import Keyspace
from service.store.segments import ArchiveError
from tests.integration.audit.helpers import (
    START_MS,
    dump,
    fill_log,
    log_ids,
    rewrite_segment,
    scripted_history,
    set_checkpoint,
)

END = START_MS + 10_000


async def all_ids(
    redis: Redis, keys: Keyspace, directory: Path | None, after: str = "0-0"
) -> list[str]:
    return [e.position async for e in read_all(redis, keys, 0, directory, after)]


async def test_archives_passed_entries_then_trims_and_reads_both(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    ids = await fill_log(redis, keys, 50)
    await set_checkpoint(redis, keys, ids[-1])
    report = await archive(redis, keys, START_MS + 30, tmp_path, segment_entries=12)
    [part] = report.partitions
    assert (part.entries, part.segments, part.trimmed) == (30, 3, 30)
    assert await log_ids(redis, keys) == ids[30:]
    assert [e.position for e in read_archive(tmp_path, 0)] == ids[:30]
    assert await all_ids(redis, keys, tmp_path) == ids
    assert await all_ids(redis, keys, tmp_path, after=ids[9]) == ids[10:]
    assert await all_ids(redis, keys, tmp_path, after=ids[40]) == ids[41:]
    assert await all_ids(redis, keys, None) == ids[30:]
    [first, *_] = segments.manifests(tmp_path, 0)
    assert (first.first_id, first.count, first.first_prev) == (ids[0], 12, "")


async def test_rerun_archives_only_what_is_new(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    ids = await fill_log(redis, keys, 20)
    await set_checkpoint(redis, keys, ids[-1])
    await archive(redis, keys, START_MS + 10, tmp_path)
    again = await archive(redis, keys, START_MS + 10, tmp_path)
    assert again.entries == 0
    more = await archive(redis, keys, END, tmp_path)
    assert more.entries == 10
    assert [e.position for e in read_archive(tmp_path, 0)] == ids
    assert await log_ids(redis, keys) == []
    assert await all_ids(redis, keys, tmp_path) == ids
    more_ids = await fill_log(redis, keys, 5, start_ms=END)
    assert await all_ids(redis, keys, tmp_path) == ids + more_ids


async def test_lagging_projection_bounds_the_archive(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    ids = await fill_log(redis, keys, 20)
    await set_checkpoint(redis, keys, ids[-1])
    await redis.hset(keys.checkpoint(0, "shadow"), "position", ids[6])
    report = await archive(redis, keys, END, tmp_path)
    assert report.partitions[0].entries == 7
    assert "projection shadow" in report.partitions[0].reason
    assert await log_ids(redis, keys) == ids[7:]


async def test_no_views_checkpoint_archives_nothing(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    ids = await fill_log(redis, keys, 5)
    report = await archive(redis, keys, END, tmp_path)
    assert report.entries == 0
    assert await log_ids(redis, keys) == ids


async def test_consumer_group_and_its_pending_entries_are_kept(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    ids = await fill_log(redis, keys, 20)
    await set_checkpoint(redis, keys, ids[-1])
    log = keys.log(0)
    await redis.xgroup_create(log, "subscribers", id=ids[11])
    await redis.xreadgroup("subscribers", "c1", {log: ">"}, count=4)  # 12..15 pending
    await redis.xack(log, "subscribers", ids[12], ids[14])  # oldest pending stays ids[13]... and 15
    report = await archive(redis, keys, END, tmp_path)
    # 12 was acked, so entries before the oldest pending (13) may go
    assert report.partitions[0].entries == 13
    assert await log_ids(redis, keys) == ids[13:]
    await redis.xack(log, "subscribers", ids[13], ids[15])
    report = await archive(redis, keys, END, tmp_path)
    assert report.partitions[0].entries == 3  # up to the group's last delivered (15)
    assert "consumer group subscribers" in report.partitions[0].reason
    pending = await redis.xreadgroup("subscribers", "c1", {log: ">"}, count=100)
    assert [eid.decode() for eid, _ in pending[0][1]] == ids[16:]


async def test_refuses_a_directory_that_does_not_continue_the_log(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    ids = await fill_log(redis, keys, 20)
    await set_checkpoint(redis, keys, ids[-1])
    await archive(redis, keys, START_MS + 10, tmp_path / "a")
    with pytest.raises(ArchiveError, match="does not continue"):
        await archive(redis, keys, END, tmp_path / "b")
    assert await log_ids(redis, keys) == ids[10:]


async def snapshot(redis: Redis) -> dict[str, Any]:
    return {
        "views": await dump(redis, "cs:{0}:view:*"),
        "state": await dump(redis, "cs:{0}:state:*"),
        "events": await dump(redis, "cs:{0}:events:*"),
        "hwm": await dump(redis, "cs:{0}:hwm"),
    }


@pytest.fixture
async def other(redis_url: str) -> AsyncIterator[Redis]:
    """An empty Redis keyspace (database 1 of the test server) to restore into."""
    client = Redis.from_url(redis_url + "/1", socket_timeout=10)
    await client.flushdb()
    yield client
    await client.aclose()


async def test_archive_trim_restore_rebuilds_identical_views_and_write_model(
    api: TestClient, redis: Redis, other: Redis, keys: Keyspace, clock: FixedClock, tmp_path: Path
) -> None:
    await scripted_history(api, redis, keys, clock)
    before = await snapshot(redis)
    ids = await log_ids(redis, keys)
    far = int(time.time() * 1000) + 86_400_000
    report = await archive(redis, keys, far, tmp_path, segment_entries=7)
    assert report.entries == len(ids) and await log_ids(redis, keys) == []
    assert (await verify(redis, keys, tmp_path)).intact

    restored = await restore(other, keys, tmp_path)
    assert restored.entries == len(ids)
    assert await log_ids(other, keys) == ids
    assert (await verify(other, keys, None)).intact
    after = await snapshot(other)
    for part in ("views", "state", "events", "hwm"):
        assert after[part] == before[part], part
    # the ticker plans every active schedule again; unfinished runs are back in place
    assert {m.decode() for m in await other.zrange(keys.due(0), 0, -1)} == {"a", "d"}
    assert restored.write_model.runs == {
        "queued": 3,
        "retrying": 1,
        "deadlettered": 1,
        "buffered": 1,
    }


async def test_restore_refuses_a_keyspace_with_a_log(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    ids = await fill_log(redis, keys, 5)
    await set_checkpoint(redis, keys, ids[-1])
    await archive(redis, keys, END, tmp_path)
    await fill_log(redis, keys, 1, start_ms=END)
    with pytest.raises(RestoreRefused, match="already exists"):
        await restore(redis, keys, tmp_path)


async def test_restore_refuses_a_broken_archive(
    redis: Redis, other: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    ids = await fill_log(redis, keys, 5)
    await set_checkpoint(redis, keys, ids[-1])
    await archive(redis, keys, END, tmp_path)
    [manifest] = segments.manifests(tmp_path, 0)
    rewrite_segment(tmp_path / manifest.segment, lambda lines: lines[:2] + lines[3:])
    with pytest.raises(RestoreRefused, match="broken"):
        await restore(other, keys, tmp_path)
    assert await other.exists(keys.log(0)) == 0
