"""Keyspace versioning: the layout version recorded in Redis, checked at start, migrated.

``cs:meta`` field ``version`` names the layout the data is in. A service refuses to
start on a keyspace older than it knows (run ``cronstream migrate`` first) or
newer (upgrade cronstream). A fresh keyspace (no meta, no log) is stamped with the
current version. A keyspace with a log but no meta was written before versions
were recorded: version 1.

``migrate`` applies the registered migrations above the recorded version in
order, each an idempotent async function, recording the version after each one,
under a lock (``SET NX PX`` with a token, renewed at half its TTL), so two
concurrent migrates never interleave: the second waits, then refuses clearly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from migrations import m002_state_status
from migrations.partitions import FIELD as PARTITIONS_FIELD
from migrations.partitions import PROGRESS, check_partitions, recorded_partitions
from migrations.repartition import RepartitionReport, repartition
from service.errors import CronstreamError, KeyspaceVersionError
from service.store.keys import Keyspace
from service.store.scripts import load_script

KEYSPACE_VERSION = 2
BASE_VERSION = 1  # the layout before any migration
LOCK_TTL_MS = 30_000
POLL_S = 0.1

Apply = Callable[[Redis, Keyspace], Awaitable[None]]


@dataclass(frozen=True)
class Migration:
    """Brings a keyspace from ``version - 1`` to ``version``. ``apply`` must be idempotent:
    a migrate that stops after it and before the version is recorded runs it again."""

    version: int
    name: str
    apply: Apply


MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, m002_state_status.NAME, m002_state_status.apply),
)


class KeyspaceTooOld(KeyspaceVersionError):
    """The keyspace is older than this build: it must be migrated before starting."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(found, known)
        self.args = (
            f"the keyspace is at version {found}, this build needs version {known}: "
            "run `cronstream migrate` before starting it on this Redis",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class MigrationLocked(CronstreamError, RuntimeError):
    """Another ``cronstream migrate`` holds the lock."""

    def __init__(self, holder: str, waited_s: float) -> None:
        self.holder = holder
        super().__init__(
            f"another migrate ({holder}) holds the keyspace lock; waited {waited_s:g}s: "
            "try again when it has finished"
        )


class MigrationLockLost(CronstreamError, RuntimeError):
    def __init__(self, version: int) -> None:
        super().__init__(
            f"the migrate lock expired before version {version} was recorded; run migrate again"
        )


@dataclass
class MigrateReport:
    before: int
    after: int
    applied: list[str] = field(default_factory=list)
    stamped_fresh: bool = False
    repartitioned: RepartitionReport | None = None


async def recorded_version(redis: Redis, keys: Keyspace) -> int | None:
    """The version in ``cs:meta``; 1 for a log without one; None for a fresh keyspace."""
    raw = await redis.hget(keys.meta, "version")
    if raw is not None:
        return int(raw)
    for p in range(keys.partitions):
        if await redis.exists(keys.log(p)):
            return BASE_VERSION
    return None


async def check_keyspace(redis: Redis, keys: Keyspace) -> int:
    """Stamp a fresh keyspace; refuse an older or a newer one, or one of another partition
    count (migrations/partitions.py); return the version found."""
    found = await recorded_version(redis, keys)
    if found is None:
        await redis.hsetnx(keys.meta, "version", KEYSPACE_VERSION)
        found = int(await redis.hget(keys.meta, "version") or 0)
    if found > KEYSPACE_VERSION:
        raise KeyspaceVersionError(found, KEYSPACE_VERSION)
    if found < KEYSPACE_VERSION:
        raise KeyspaceTooOld(found, KEYSPACE_VERSION)
    await check_partitions(redis, keys)
    return found


def check_registry(migrations: tuple[Migration, ...], target: int) -> None:
    """Migrations must be numbered BASE+1 .. target, each once, in order."""
    versions = [m.version for m in migrations]
    expected = list(range(BASE_VERSION + 1, target + 1))
    if versions != expected:
        raise ValueError(f"migrations must be versions {expected} in order, not {versions}")


class _Lock:
    def __init__(self, redis: Redis, keys: Keyspace, ttl_ms: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_ms = ttl_ms
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._script = load_script(redis, "migrations", "lock.lua")

    async def call(self, op: str, arg: int | str = "") -> bool:
        reply = await self._script(
            keys=[self.keys.migrate_lock, self.keys.meta], args=[op, self.token, arg]
        )
        return bool(reply)

    async def acquire(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            if await self.redis.set(self.keys.migrate_lock, self.token, nx=True, px=self.ttl_ms):
                return
            if time.monotonic() >= deadline:
                holder = await self.redis.get(self.keys.migrate_lock)
                text = holder.decode() if isinstance(holder, bytes) else str(holder or "?")
                raise MigrationLocked(text, wait_s)
            await asyncio.sleep(min(POLL_S, max(deadline - time.monotonic(), 0.001)))

    async def renew(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.ttl_ms / 2000)
            if not stop.is_set() and not await self.call("renew", self.ttl_ms):
                return  # lost: the stamp will refuse

    @contextlib.asynccontextmanager
    async def held(self, wait_s: float) -> AsyncIterator[_Lock]:
        await self.acquire(wait_s)
        stop = asyncio.Event()
        renewer = asyncio.create_task(self.renew(stop), name="migrate-lock-renew")
        try:
            yield self
        finally:
            stop.set()
            await renewer
            await self.call("release")


async def migrate(
    redis: Redis,
    keys: Keyspace,
    *,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    target: int = KEYSPACE_VERSION,
    wait_s: float = 30.0,
    lock_ttl_ms: int = LOCK_TTL_MS,
    partitions: int | None = None,
) -> MigrateReport:
    """Bring the keyspace to ``target``, then to ``partitions`` partitions if given
    (migrations/repartition.py); a no-op when it is there already.

    Raises MigrationLocked when another migrate holds the lock for ``wait_s``,
    KeyspaceVersionError when the keyspace is newer than ``target``, and
    RepartitionRefused when a re-partition cannot run now.
    """
    check_registry(migrations, target)
    async with _Lock(redis, keys, lock_ttl_ms).held(wait_s) as lock:
        found = await recorded_version(redis, keys)
        if found is None:
            await lock.call("stamp", target)
            await redis.hsetnx(keys.meta, PARTITIONS_FIELD, partitions or keys.partitions)
            return MigrateReport(target, target, stamped_fresh=True)
        if found > target:
            raise KeyspaceVersionError(found, target)
        current = await recorded_partitions(redis, keys) or await check_partitions(redis, keys)
        report = MigrateReport(found, found)
        recorded = Keyspace(keys.prefix, current)
        for migration in migrations:
            if migration.version <= found:
                continue
            await migration.apply(redis, recorded)
            if not await lock.call("stamp", migration.version):
                raise MigrationLockLost(migration.version)
            report.after = migration.version
            report.applied.append(f"{migration.version}: {migration.name}")
        if partitions is not None and (partitions != current or await _interrupted(redis, keys)):
            report.repartitioned = await repartition(redis, keys, current, partitions)
        return report


async def _interrupted(redis: Redis, keys: Keyspace) -> bool:
    """A re-partition stopped half way (the same count asked again finishes it)."""
    return bool(await redis.hexists(keys.meta, PROGRESS))
