"""Keyspace versions: stamping, refusal of older and newer, ordered locked idempotent migrate."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from migrations import m002_state_status
from migrations.keyspace import (
    KEYSPACE_VERSION,
    KeyspaceTooOld,
    Migration,
    MigrationLocked,
    check_keyspace,
    migrate,
)
from service.cli import migrate_cmd
from service.errors import KeyspaceVersionError
from service.store.keys import Keyspace


async def version(redis: Redis, keys: Keyspace) -> int | None:
    raw = await redis.hget(keys.meta, "version")
    return None if raw is None else int(raw)


async def test_a_fresh_keyspace_is_stamped_with_the_current_version(
    redis: Redis, keys: Keyspace
) -> None:
    assert KEYSPACE_VERSION == 2
    assert await check_keyspace(redis, keys) == KEYSPACE_VERSION
    assert await version(redis, keys) == KEYSPACE_VERSION
    assert await check_keyspace(redis, keys) == KEYSPACE_VERSION  # and again


async def test_an_older_keyspace_is_refused_until_migrated(redis: Redis, keys: Keyspace) -> None:
    await redis.hset(keys.meta, "version", 1)
    with pytest.raises(KeyspaceTooOld, match="run `cronstream migrate`"):
        await check_keyspace(redis, keys)
    assert await version(redis, keys) == 1  # refusing changes nothing
    report = await migrate(redis, keys)
    assert (report.before, report.after) == (1, 2)
    assert await check_keyspace(redis, keys) == 2


async def test_a_log_without_a_version_is_version_one(redis: Redis, keys: Keyspace) -> None:
    await redis.xadd(keys.log(0), {"type": "X", "v": "1", "sid": "s", "data": "{}", "meta": "{}"})
    with pytest.raises(KeyspaceTooOld, match="version 1"):
        await check_keyspace(redis, keys)
    assert await version(redis, keys) is None


async def test_a_newer_keyspace_is_refused_by_check_and_by_migrate(
    redis: Redis, keys: Keyspace
) -> None:
    await redis.hset(keys.meta, "version", 3)
    with pytest.raises(KeyspaceVersionError, match="version 3") as caught:
        await check_keyspace(redis, keys)
    assert not isinstance(caught.value, KeyspaceTooOld)
    with pytest.raises(KeyspaceVersionError):
        await migrate(redis, keys)
    assert await version(redis, keys) == 3


def recording(calls: list[int], version_: int, delay_s: float = 0.0) -> Migration:
    async def apply(_redis: Redis, _keys: Keyspace) -> None:
        calls.append(version_)
        if delay_s:
            await asyncio.sleep(delay_s)  # a slow migration, to hold the lock a while

    return Migration(version_, f"step {version_}", apply)


async def test_migrations_apply_in_order_from_the_recorded_version(
    redis: Redis, keys: Keyspace
) -> None:
    calls: list[int] = []
    registry = tuple(recording(calls, v) for v in (2, 3, 4))
    await redis.hset(keys.meta, "version", 2)
    report = await migrate(redis, keys, migrations=registry, target=4)
    assert calls == [3, 4]
    assert report.applied == ["3: step 3", "4: step 4"]
    assert await version(redis, keys) == 4
    again = await migrate(redis, keys, migrations=registry, target=4)
    assert calls == [3, 4] and again.applied == [] and again.after == 4
    with pytest.raises(ValueError, match="in order"):
        await migrate(redis, keys, migrations=(registry[1], registry[0], registry[2]), target=4)


async def test_a_failed_migration_keeps_the_last_good_version(redis: Redis, keys: Keyspace) -> None:
    calls: list[int] = []

    async def broken(_redis: Redis, _keys: Keyspace) -> None:
        raise RuntimeError("boom")

    registry = (recording(calls, 2), Migration(3, "broken", broken))
    await redis.hset(keys.meta, "version", 1)
    with pytest.raises(RuntimeError, match="boom"):
        await migrate(redis, keys, migrations=registry, target=3)
    assert await version(redis, keys) == 2
    assert await redis.get(keys.migrate_lock) is None  # released


async def test_a_fresh_keyspace_is_stamped_by_migrate_without_running_anything(
    redis: Redis, keys: Keyspace
) -> None:
    calls: list[int] = []
    report = await migrate(redis, keys, migrations=(recording(calls, 2),), target=2)
    assert report.stamped_fresh and calls == [] and await version(redis, keys) == 2


async def test_a_held_lock_makes_another_migrate_wait_then_refuse(
    redis: Redis, keys: Keyspace
) -> None:
    await redis.hset(keys.meta, "version", 1)
    await redis.set(keys.migrate_lock, "someone-else", px=60_000)
    with pytest.raises(MigrationLocked, match="someone-else"):
        await migrate(redis, keys, wait_s=0.3)
    assert await version(redis, keys) == 1
    assert await redis.get(keys.migrate_lock) == b"someone-else"  # not ours to free


async def test_two_concurrent_migrates_apply_each_step_once(redis: Redis, keys: Keyspace) -> None:
    calls: list[int] = []
    registry = (recording(calls, 2, delay_s=0.3), recording(calls, 3))
    await redis.hset(keys.meta, "version", 1)
    first, second = await asyncio.gather(
        migrate(redis, keys, migrations=registry, target=3, wait_s=10),
        migrate(redis, keys, migrations=registry, target=3, wait_s=10),
    )
    assert calls == [2, 3]
    assert sorted([len(first.applied), len(second.applied)]) == [0, 2]
    assert await version(redis, keys) == 3


async def test_the_lock_is_renewed_while_a_long_migration_runs(
    redis: Redis, keys: Keyspace
) -> None:
    calls: list[int] = []
    await redis.hset(keys.meta, "version", 1)
    report = await migrate(
        redis, keys, migrations=(recording(calls, 2, delay_s=0.6),), target=2, lock_ttl_ms=200
    )
    assert report.applied == ["2: step 2"] and await version(redis, keys) == 2


async def write_state(redis: Redis, keys: Keyspace, sid: str, snapshot: dict[str, Any]) -> None:
    await redis.hset(
        keys.state(0, "schedule", sid), mapping={"version": 1, "state": orjson.dumps(snapshot)}
    )


async def test_v2_gives_every_schedule_state_its_status(redis: Redis, keys: Keyspace) -> None:
    await write_state(redis, keys, "a", {"config": {}, "status": "active", "deleted": False})
    await write_state(redis, keys, "p", {"config": {}, "status": "paused", "deleted": False})
    await write_state(redis, keys, "d", {"config": {}, "status": "paused", "deleted": True})
    await write_state(redis, keys, "k", {"config": {}, "status": "active", "deleted": False})
    await redis.hset(keys.state(0, "schedule", "k"), "status", "completed")  # already there
    await redis.hset(keys.meta, "version", 1)
    await migrate(redis, keys)
    await m002_state_status.apply(redis, keys)  # idempotent
    statuses = {sid: await redis.hget(keys.state(0, "schedule", sid), "status") for sid in "apdk"}
    assert statuses == {"a": b"active", "p": b"paused", "d": b"deleted", "k": b"completed"}


async def test_cli_migrate(
    redis: Redis,
    keys: Keyspace,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    parser = argparse.ArgumentParser(prog="cronstream")
    migrate_cmd.add_parsers(parser.add_subparsers(dest="command", required=True))
    await redis.hset(keys.meta, "version", 1)
    args = parser.parse_args(["migrate", "--wait", "1"])
    assert await asyncio.to_thread(args.func, args) == 0
    assert "from version 1 to 2" in capsys.readouterr().out
    assert await asyncio.to_thread(args.func, args) == 0
    assert "already at version 2" in capsys.readouterr().out
