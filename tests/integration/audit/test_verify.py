"""verify: an intact chain is reported with counts; one altered, deleted or moved entry
(in Redis or in an archive file) is reported at the right position."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from functools import partial
from pathlib import Path

import orjson
from redis.asyncio import Redis

from migrations.keyspace import check_keyspace
from service.audit.archive import archive
from service.audit.verify import ALTERED, LIVE, MISSING, MISSING_AT_END, summary, verify
from service.domain.timeutil import to_rfc3339
from service.store import segments
from service.store.keys import Keyspace
from tests.integration.audit.helpers import (
    START_MS,
    chained,
    fill_log,
    rewrite_segment,
    set_checkpoint,
    write_entries,
)
from tests.process import ROOT, env


async def test_intact_chain_reports_counts_and_head(redis: Redis, keys: Keyspace) -> None:
    await fill_log(redis, keys, 30)
    report = await verify(redis, keys, None)
    assert report.intact
    [chain] = report.partitions
    assert (chain.archived, chain.live) == (0, 30)
    assert chain.head == (await redis.get(keys.chain(0))).decode()
    assert "intact" in summary(report)


async def test_empty_keyspace_is_intact(redis: Redis, keys: Keyspace) -> None:
    report = await verify(redis, keys, None)
    assert report.intact and report.entries == 0


async def test_altered_entry_in_redis(redis: Redis, keys: Keyspace) -> None:
    entries = chained(20)
    eid, fields = entries[7]
    entries[7] = (eid, {**fields, "data": orjson.dumps({"n": 700}).decode()})
    await write_entries(redis, keys, entries)
    found = (await verify(redis, keys, None)).first_break
    assert found is not None
    assert (found.position, found.where, found.reason) == (eid, LIVE, ALTERED)


async def test_deleted_entry_in_redis(redis: Redis, keys: Keyspace) -> None:
    ids = await fill_log(redis, keys, 20)
    await redis.xdel(keys.log(0), ids[7])
    found = (await verify(redis, keys, None)).first_break
    assert found is not None
    assert (found.position, found.reason) == (ids[8], MISSING)
    assert ids[6] in found.detail


async def test_reordered_entries_in_redis(redis: Redis, keys: Keyspace) -> None:
    entries = chained(20)
    (id7, f7), (id8, f8) = entries[7], entries[8]
    entries[7], entries[8] = (id7, f8), (id8, f7)  # contents swapped, ids still ascending
    await write_entries(redis, keys, entries)
    found = (await verify(redis, keys, None)).first_break
    assert found is not None
    assert (found.position, found.reason) == (id7, MISSING)


async def test_deleted_newest_entry_breaks_the_head(redis: Redis, keys: Keyspace) -> None:
    ids = await fill_log(redis, keys, 5)
    await redis.xdel(keys.log(0), ids[-1])
    found = (await verify(redis, keys, None)).first_break
    assert found is not None
    assert (found.position, found.reason) == (ids[-2], MISSING_AT_END)


async def archived(redis: Redis, keys: Keyspace, tmp_path: Path) -> tuple[list[str], Path]:
    ids = await fill_log(redis, keys, 40)
    await set_checkpoint(redis, keys, ids[-1])
    await archive(redis, keys, START_MS + 25, tmp_path, segment_entries=10)
    return ids, tmp_path


async def test_archive_and_log_verify_together(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    _, directory = await archived(redis, keys, tmp_path)
    report = await verify(redis, keys, directory)
    assert report.intact, summary(report)
    [chain] = report.partitions
    assert (chain.archived, chain.segments, chain.live) == (25, 3, 15)
    recorded = await verify(redis, keys)  # no directory given: the one the run recorded
    assert recorded.intact, summary(recorded)
    assert [(c.archived, c.live) for c in recorded.partitions] == [(25, 15)]
    elsewhere = (await verify(redis, keys, tmp_path / "empty")).unreadable
    assert [(u.partition, u.before) for u in elsewhere] == [(0, f"{START_MS + 24}-1")]


async def test_edited_line_in_archive(redis: Redis, keys: Keyspace, tmp_path: Path) -> None:
    ids, directory = await archived(redis, keys, tmp_path)
    second = segments.manifests(directory, 0)[1]

    def edit(lines: list[bytes]) -> list[bytes]:
        record = orjson.loads(lines[3])
        record["data"] = orjson.dumps({"n": 999}).decode()
        lines[3] = orjson.dumps(record) + b"\n"
        return lines

    rewrite_segment(directory / second.segment, edit)
    found = (await verify(redis, keys, directory)).first_break
    assert found is not None
    assert (found.position, found.reason) == (ids[13], ALTERED)
    assert found.where == f"archive {second.segment} line 4"


async def test_swapped_lines_in_archive(redis: Redis, keys: Keyspace, tmp_path: Path) -> None:
    ids, directory = await archived(redis, keys, tmp_path)
    first = segments.manifests(directory, 0)[0]

    def swap(lines: list[bytes]) -> list[bytes]:
        lines[4], lines[5] = lines[5], lines[4]
        return lines

    rewrite_segment(directory / first.segment, swap)
    found = (await verify(redis, keys, directory)).first_break
    assert found is not None
    assert (found.position, found.reason) == (ids[5], MISSING)
    assert found.where == f"archive {first.segment} line 5"


async def test_deleted_line_in_archive(redis: Redis, keys: Keyspace, tmp_path: Path) -> None:
    ids, directory = await archived(redis, keys, tmp_path)
    last = segments.manifests(directory, 0)[-1]
    rewrite_segment(directory / last.segment, lambda lines: lines[:2] + lines[3:])
    found = (await verify(redis, keys, directory)).first_break
    assert found is not None
    assert (found.position, found.reason) == (ids[23], MISSING)
    assert found.where == f"archive {last.segment} line 3"


async def test_missing_segment(redis: Redis, keys: Keyspace, tmp_path: Path) -> None:
    ids, directory = await archived(redis, keys, tmp_path)
    middle = segments.manifests(directory, 0)[1]
    (directory / middle.segment).unlink()
    found = (await verify(redis, keys, directory)).first_break
    assert found is not None
    assert (found.position, found.reason) == (ids[10], MISSING)


async def test_deleted_first_live_entry_after_archive(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    ids, directory = await archived(redis, keys, tmp_path)
    await redis.xdel(keys.log(0), ids[25])
    found = (await verify(redis, keys, directory)).first_break
    assert found is not None
    assert (found.position, found.where, found.reason) == (ids[26], LIVE, MISSING)


def command(*args: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    """The commands as a process (``python -m service.cli.archive_cmd``), on the test Redis."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli.archive_cmd", *args],
        env=env(REDIS_URL=redis_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_commands_exit_codes_and_summaries(
    redis: Redis, redis_url: str, keys: Keyspace, tmp_path: Path
) -> None:
    await check_keyspace(redis, keys)
    ids = await fill_log(redis, keys, 30)
    await set_checkpoint(redis, keys, ids[-1])
    before = to_rfc3339(START_MS + 20)
    run = partial(asyncio.to_thread, command, redis_url=redis_url)

    archived = await run("archive", "--before", before, "--to", str(tmp_path))
    assert archived.returncode == 0, archived.stderr
    assert "partition 0: archived 20 entries" in archived.stdout

    intact = await run("verify", "--archive", str(tmp_path))
    assert intact.returncode == 0, intact.stderr
    assert "partition 0: intact, 30 entries (20 archived in 1 segment(s), 10 live)" in intact.stdout

    await redis.xdel(keys.log(0), ids[25])
    broken = await run("verify", "--archive", str(tmp_path))
    assert broken.returncode == 1
    assert f"chain broken at {ids[26]} (live log): missing or out of order" in broken.stdout

    refused = await run("restore", str(tmp_path))
    assert refused.returncode == 1
    assert "restore refused" in refused.stderr and "already exists" in refused.stderr

    bad = await run("archive", "--before", "yesterday", "--to", str(tmp_path))
    assert bad.returncode == 2 and "--before" in bad.stderr


class AppendsBeforeTheHeadIsRead:
    """The test's Redis, where entries are appended just before verify first reads the
    chain head: what a live log does between verify's last page and that read."""

    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self.appended = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.redis, name)

    async def get(self, key: str) -> bytes | None:
        if key == self.keys.chain(0) and not self.appended:
            self.appended = True
            await fill_log(self.redis, self.keys, 3, start_ms=START_MS + 100)
        return await self.redis.get(key)  # type: ignore[no-any-return]


async def test_entries_appended_while_verify_reads_are_walked_not_reported(
    redis: Redis, keys: Keyspace
) -> None:
    await fill_log(redis, keys, 5)
    busy = AppendsBeforeTheHeadIsRead(redis, keys)
    report = await verify(busy, keys, None)  # type: ignore[arg-type]
    assert busy.appended
    assert report.intact, summary(report)
    assert report.partitions[0].live == 8
