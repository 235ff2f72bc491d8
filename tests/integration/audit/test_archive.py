"""Archive and trim: only what every consumer has passed; read archive plus log."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.audit import segments
from service.audit.archive import archive, read_all, read_archive
from service.audit.segments import ArchiveError
from service.store.keys import Keyspace
from tests.integration.audit.helpers import START_MS, fill_log, log_ids, set_checkpoint

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
