"""The command-line readers of history (audit, replay, verify) and ``archive`` itself find
the archive an archive run recorded, without flags; a moved archive is named, never
read as a history that starts later or as a broken chain."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from migrations.keyspace import check_keyspace
from service.audit.archive import archive
from service.audit.restore import restore
from service.cli import archive_cmd, audit_cmd
from service.clock import FixedClock
from service.domain.timeutil import to_rfc3339
from service.store import segments
from service.store.archive_record import ArchiveTrim, read_record
from service.store.eventstore import parse_position
from service.store.keys import Keyspace
from tests.integration.audit.helpers import START_MS, caught_up, fill_log, set_checkpoint
from tests.integration.audit.test_history import scripted
from tests.process import cli

REPLAY_AT = "2026-01-15T12:00:30Z"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cronstream")
    sub = p.add_subparsers(dest="command", required=True)
    audit_cmd.add_parsers(sub)
    archive_cmd.add_parsers(sub)
    return p


@pytest.fixture
def run(redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run a command in this process with no archive setting; (exit code, stdout)."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("CRONSTREAM_ARCHIVE_DIR", raising=False)

    async def go(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        args = parser().parse_args(list(argv))
        code: int = await asyncio.to_thread(args.func, args)
        return code, capsys.readouterr().out

    return go


async def command(redis_url: str, *argv: str, **env: str) -> Any:
    """``cronstream ...`` as a user runs it (a process), with no archive setting."""
    settings = {"REDIS_URL": redis_url, "CRONSTREAM_ARCHIVE_DIR": "", **env}
    return await asyncio.to_thread(cli, *argv, **settings)


@dataclass
class Archived:
    directory: Path
    audit: Any
    replay: Any
    before: str


@pytest.fixture
async def archived(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock, tmp_path: Path, run: Any
) -> AsyncIterator[Archived]:
    """A schedule's history, read by audit and replay, then all but its newest entries
    archived and trimmed."""
    await check_keyspace(redis, keys)  # what `serve` does on a fresh keyspace
    await scripted(api, redis, keys, clock)
    await caught_up(redis, keys)
    code, audit_out = await run("audit", "s", "--output", "json")
    assert code == 0
    code, replay_out = await run("replay", "--at", REPLAY_AT, "--schedule", "s")
    assert code == 0
    newest = (await redis.xrevrange(keys.log(0), count=1))[0][0].decode()
    report = await archive(redis, keys, int(newest.split("-")[0]), tmp_path / "archive")
    assert report.entries >= 6 and await redis.xlen(keys.log(0)) <= 2
    record = await read_record(redis, keys, 0)
    assert record is not None
    yield Archived(
        tmp_path / "archive", orjson.loads(audit_out), orjson.loads(replay_out), record.before
    )


async def test_audit_and_replay_read_the_recorded_archive(archived: Archived, run: Any) -> None:
    assert archived.audit["items"][0]["type"] == "ScheduleCreated"
    code, out = await run("audit", "s", "--output", "json")
    assert code == 0 and orjson.loads(out) == archived.audit
    code, out = await run("replay", "--at", REPLAY_AT, "--schedule", "s")
    assert code == 0 and orjson.loads(out) == archived.replay


async def test_verify_walks_the_recorded_archive(archived: Archived, redis_url: str) -> None:
    found = await command(redis_url, "verify")
    assert found.returncode == 0, found.stdout + found.stderr
    assert "partition 0: intact" in found.stdout and "0 archived" not in found.stdout


async def test_a_moved_archive_is_named_by_every_reader(archived: Archived, redis_url: str) -> None:
    archived.directory.rename(archived.directory.with_name("moved"))
    problem = (
        f"events of partition 0 before position {archived.before} are archived at "
        f"{archived.directory}, which cannot be read: no such directory"
    )
    for argv in (("audit", "s"), ("replay", "--at", REPLAY_AT, "--schedule", "s")):
        done = await command(redis_url, *argv)
        assert done.returncode == 1, argv
        assert problem in done.stderr and "Traceback" not in done.stderr, done.stderr
    checked = await command(redis_url, "verify")
    assert checked.returncode == archive_cmd.ARCHIVE_MISSING, checked.stdout + checked.stderr
    assert f"partition 0: not checked: {problem}" in checked.stdout
    assert "archive MISSING" in checked.stdout and "BROKEN" not in checked.stdout
    copy = await command(redis_url, "verify", CRONSTREAM_ARCHIVE_DIR=str(archived.directory))
    assert copy.returncode == archive_cmd.ARCHIVE_MISSING  # the setting names the old place
    moved = archived.directory.with_name("moved")
    found = await command(redis_url, "verify", "--archive", str(moved))
    assert found.returncode == 0, found.stdout


async def test_archive_takes_the_setting_then_the_recorded_directory(
    redis: Redis, keys: Keyspace, tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await check_keyspace(redis, keys)
    ids = await fill_log(redis, keys, 30)
    await set_checkpoint(redis, keys, ids[-1])
    code, _ = await run("archive", "--before", to_rfc3339(START_MS + 10))
    assert code == 2  # nowhere to archive to yet
    monkeypatch.setenv("CRONSTREAM_ARCHIVE_DIR", str(tmp_path / "from-env"))
    code, out = await run("archive", "--before", to_rfc3339(START_MS + 10))
    assert code == 0 and "archived 10 entries" in out
    monkeypatch.delenv("CRONSTREAM_ARCHIVE_DIR")
    code, out = await run("archive", "--before", to_rfc3339(START_MS + 20))
    assert code == 0 and f"archived 10 entries to {tmp_path / 'from-env'}" in out
    assert [m.count for m in segments.manifests(tmp_path / "from-env", 0)] == [10, 10]
    record = await read_record(redis, keys, 0)
    assert record is not None and record.before == f"{START_MS + 19}-1"
    (tmp_path / "from-env").rename(tmp_path / "elsewhere")
    code, _ = await run("archive", "--before", to_rfc3339(START_MS + 25))
    assert code == 2 and not (tmp_path / "from-env").exists()  # no fresh, partial archive


async def test_the_recorded_trim_position_never_moves_back(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    ids = await fill_log(redis, keys, 30)
    await set_checkpoint(redis, keys, ids[-1])
    await archive(redis, keys, START_MS + 20, tmp_path)
    trim = ArchiveTrim(redis, keys)
    assert await trim.run(0, parse_position(ids[5]), tmp_path) == 0
    record = await read_record(redis, keys, 0)
    assert record is not None and record.before == f"{START_MS + 19}-1"


async def test_restore_clears_the_record(
    redis: Redis, redis_url: str, keys: Keyspace, tmp_path: Path
) -> None:
    ids = await fill_log(redis, keys, 10)
    await set_checkpoint(redis, keys, ids[-1])
    await archive(redis, keys, START_MS + 100, tmp_path)
    other = Redis.from_url(redis_url + "/1", socket_timeout=10)
    try:
        await other.flushdb()
        await other.hset(keys.archived(0), mapping={"dir": "/gone", "before": ids[-1]})
        await restore(other, keys, tmp_path)
        assert await read_record(other, keys, 0) is None
    finally:
        await other.flushdb()
        await other.aclose()


async def test_projections_rebuild_reads_the_recorded_archive(
    archived: Archived, redis_url: str
) -> None:
    rebuilt = await command(redis_url, "projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "rebuilt 1 partition(s)" in rebuilt.stdout
    archived.directory.rename(archived.directory.with_name("moved"))
    refused = await command(redis_url, "projections", "rebuild")
    assert refused.returncode != 0
    assert "which cannot be read" in refused.stderr and "Traceback" not in refused.stderr
