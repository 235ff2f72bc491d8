"""Rebuild the views from the log alone: in place, or beside the live ones (shadow).

``rebuild`` drops every view and replays the log into it. ``shadow_rebuild``
builds the views into the ``shadow`` namespace with their own checkpoint while
the live ones keep serving, reports how the two differ, and switches to the
shadow (one script per partition) only when they agree or when forced — so a
projection change can be checked on production data before it goes live.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from projections.projector import Projector
from service.errors import CronstreamError
from service.store.archive_reader import read_all
from service.store.eventstore import parse_position
from service.store.keys import Keyspace


@dataclass(frozen=True)
class RebuildReport:
    partitions: int
    dropped_keys: int
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


class LogTrimmed(CronstreamError, RuntimeError):
    """The log begins after archived events: a rebuild needs the archive too."""

    def __init__(self, partition: int) -> None:
        super().__init__(
            f"partition {partition}: the log's first entry follows archived events; "
            "rebuild with the archive (--archive DIR), or the views would miss them"
        )


async def check_untrimmed(redis: Redis, keys: Keyspace, partition: int) -> None:
    first: Any = await redis.xrange(keys.log(partition), count=1)
    if first and first[0][1].get(b"prev", b"") not in (b"", ""):
        raise LogTrimmed(partition)


async def catch_up_with_archive(
    projector: Projector, partition: int, archive_dir: Path | None
) -> int:
    """Apply the archived events (if any) and then the live log to ``projector``'s views."""
    if archive_dir is None:
        await check_untrimmed(projector.redis, projector.keys, partition)
        return await projector.catch_up(partition)
    applied = 0
    start = await projector.checkpoint(partition)
    batch: list[Any] = []
    async for event in read_all(
        projector.redis, projector.keys, partition, archive_dir, after=start or "0-0"
    ):
        batch.append(event)
        if len(batch) >= READ_CHUNK:
            if not await projector.apply_batch(partition, start, batch):
                raise RuntimeError("another projector moved the checkpoint during the rebuild")
            applied += len(batch)
            start, batch = batch[-1].position, []
    if batch:
        if not await projector.apply_batch(partition, start, batch):
            raise RuntimeError("another projector moved the checkpoint during the rebuild")
        applied += len(batch)
    return applied + await projector.catch_up(partition)


async def rebuild(
    redis: Redis, keys: Keyspace, namespace: str = "view", archive_dir: Path | None = None
) -> RebuildReport:
    """Drop the views and rebuild them from the log (and the archive, if the log was trimmed).

    With an archive the views are built beside the live ones and switched in, so a
    running projector never sees the views half rebuilt from a trimmed log.
    """
    if archive_dir is not None and namespace == "view":
        report = await shadow_rebuild(redis, keys, True, force=True, archive_dir=archive_dir)
        return RebuildReport(keys.partitions, 0, report.events, report.seconds)
    for p in range(keys.partitions):
        await check_untrimmed(redis, keys, p)
    reset = redis.register_script(resources.files("projections").joinpath("reset.lua").read_text())
    projector = Projector(redis, keys, namespace=namespace)
    started = time.perf_counter()
    dropped = 0
    events = 0
    for p in range(keys.partitions):
        pattern = keys.view_prefix(p, namespace).replace("[", "\\[") + "*"
        dropped += int(await reset(keys=[keys.checkpoint(p, projector.name)], args=[pattern]))
        events += await projector.catch_up(p)
    return RebuildReport(keys.partitions, dropped, events, time.perf_counter() - started)


# -- shadow rebuild (blue/green) ---------------------------------------------------------

SHADOW_NAMESPACE = "shadow"
SHADOW_PROJECTION = "views-shadow"
SETTLE_ATTEMPTS = 5
SETTLE_TIMEOUT_S = 10.0
LISTED = 100  # keys named per category in a report; the counts are always exact
READ_CHUNK = 500


@dataclass
class PartitionDiff:
    partition: int
    live_position: str
    shadow_position: str
    live_keys: int = 0
    shadow_keys: int = 0
    only_live: list[str] = field(default_factory=list)
    only_shadow: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: {"only_live": 0, "only_shadow": 0, "differing": 0}
    )

    @property
    def settled(self) -> bool:
        """Both sides were compared at the same log position."""
        return self.live_position == self.shadow_position

    @property
    def empty(self) -> bool:
        return self.settled and not any(self.counts.values())


@dataclass
class ShadowReport:
    """What a shadow rebuild found, and whether it switched the live views to it."""

    partitions: list[PartitionDiff]
    events: int
    seconds: float
    switched: bool

    @property
    def empty(self) -> bool:
        return all(d.empty for d in self.partitions)

    def summary(self) -> str:
        lines = []
        for d in self.partitions:
            lines.append(
                f"partition {d.partition}: live {d.live_keys} keys at {d.live_position or '-'}, "
                f"shadow {d.shadow_keys} keys at {d.shadow_position or '-'}: "
                f"{d.counts['only_live']} only live, {d.counts['only_shadow']} only shadow, "
                f"{d.counts['differing']} differing"
            )
            for label, names in (
                ("only live", d.only_live),
                ("only shadow", d.only_shadow),
                ("differing", d.differing),
            ):
                lines += [f"  {label}: {name}" for name in names]
        verdict = "switched to the shadow views" if self.switched else "live views kept"
        state = "no differences" if self.empty else "DIFFERENCES"
        lines.append(f"{state}; {verdict} ({self.events} events in {self.seconds:.2f}s)")
        return "\n".join(lines)


def _script(redis: Redis, name: str) -> AsyncScript:
    return redis.register_script(resources.files("projections").joinpath(name).read_text())


def _pattern(keys: Keyspace, p: int, namespace: str) -> str:
    return keys.view_prefix(p, namespace).replace("[", "\\[") + "*"


async def _names(redis: Redis, keys: Keyspace, p: int, namespace: str) -> set[str]:
    prefix = keys.view_prefix(p, namespace)
    out = set()
    async for raw in redis.scan_iter(match=_pattern(keys, p, namespace), count=1000):
        out.add((raw.decode() if isinstance(raw, bytes) else str(raw))[len(prefix) :])
    return out


async def _contents(redis: Redis, keys: list[str]) -> list[Any]:
    """Each key's type and value, read in a form that does not depend on encoding."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.type(key)
        kinds = [k.decode() if isinstance(k, bytes) else str(k) for k in await pipe.execute()]
    async with redis.pipeline(transaction=False) as pipe:
        for key, kind in zip(keys, kinds, strict=True):
            if kind == "string":
                pipe.get(key)
            elif kind == "zset":
                pipe.zrange(key, 0, -1, withscores=True)
            elif kind == "hash":
                pipe.hgetall(key)
            elif kind == "set":
                pipe.smembers(key)
            else:
                pipe.type(key)
        values = await pipe.execute()
    out: list[Any] = []
    for kind, value in zip(kinds, values, strict=True):
        if kind == "string" and value is not None:
            value = orjson.loads(value)  # records are JSON: compare values, not bytes
        elif kind == "set":
            value = sorted(value)
        out.append((kind, value))
    return out


async def diff_views(redis: Redis, keys: Keyspace, p: int, d: PartitionDiff) -> None:
    """Fill ``d`` with the keys found only on one side, and those whose content differs."""
    live = await _names(redis, keys, p, "view")
    shadow = await _names(redis, keys, p, SHADOW_NAMESPACE)
    d.live_keys, d.shadow_keys = len(live), len(shadow)
    only_live, only_shadow = sorted(live - shadow), sorted(shadow - live)
    differing = []
    common = sorted(live & shadow)
    for start in range(0, len(common), READ_CHUNK):
        chunk = common[start : start + READ_CHUNK]
        left = await _contents(redis, [keys.view(p, n, "view") for n in chunk])
        right = await _contents(redis, [keys.view(p, n, SHADOW_NAMESPACE) for n in chunk])
        differing += [n for n, a, b in zip(chunk, left, right, strict=True) if a != b]
    d.counts = {
        "only_live": len(only_live),
        "only_shadow": len(only_shadow),
        "differing": len(differing),
    }
    d.only_live, d.only_shadow, d.differing = (
        only_live[:LISTED],
        only_shadow[:LISTED],
        differing[:LISTED],
    )


async def _settle(live: Projector, shadow: Projector, p: int) -> tuple[int, str, str]:
    """Bring the shadow to the log's end and wait (bounded) for the live views to
    reach the same position; return (events applied, live position, shadow position)."""
    events = 0
    live_at = shadow_at = ""
    for _ in range(SETTLE_ATTEMPTS):
        events += await shadow.catch_up(p)
        shadow_at = await shadow.checkpoint(p)
        deadline = time.monotonic() + SETTLE_TIMEOUT_S / SETTLE_ATTEMPTS
        live_at = await live.checkpoint(p)
        while _before(live_at, shadow_at) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the live projector is applying the same events
            live_at = await live.checkpoint(p)
        if live_at == shadow_at or _before(live_at, shadow_at):
            break  # same point, or the live views are not moving (no projector running)
    return events, live_at, shadow_at


def _before(a: str, b: str) -> bool:
    return (parse_position(a) if a else (0, 0)) < (parse_position(b) if b else (0, 0))


async def shadow_rebuild(
    redis: Redis,
    keys: Keyspace,
    switch: bool,
    *,
    force: bool = False,
    archive_dir: Path | None = None,
) -> ShadowReport:
    """Build every view into the ``shadow`` namespace, diff it against the live views,
    and switch to it when ``switch`` and the diff is empty (or ``force``); otherwise
    drop the shadow keys. The live views are untouched unless switched."""
    reset = _script(redis, "reset.lua")
    swap = _script(redis, "switch.lua")
    live = Projector(redis, keys)
    shadow = Projector(redis, keys, name=SHADOW_PROJECTION, namespace=SHADOW_NAMESPACE)
    started = time.perf_counter()
    diffs: list[PartitionDiff] = []
    events = 0
    for p in range(keys.partitions):
        shadow_checkpoint = keys.checkpoint(p, SHADOW_PROJECTION)
        await reset(keys=[shadow_checkpoint], args=[_pattern(keys, p, SHADOW_NAMESPACE)])
        applied = await catch_up_with_archive(shadow, p, archive_dir)
        more, live_at, shadow_at = await _settle(live, shadow, p)
        applied += more
        events += applied
        d = PartitionDiff(p, live_at, shadow_at)
        await diff_views(redis, keys, p, d)
        if await live.checkpoint(p) != live_at:
            d.live_position = await live.checkpoint(p)  # moved while comparing: unsettled
        diffs.append(d)
    switching = switch and (force or all(d.empty for d in diffs))
    for p in range(keys.partitions):
        shadow_checkpoint = keys.checkpoint(p, SHADOW_PROJECTION)
        if switching:
            await swap(
                keys=[keys.checkpoint(p, live.name), shadow_checkpoint],
                args=[
                    _pattern(keys, p, "view"),
                    _pattern(keys, p, SHADOW_NAMESPACE),
                    keys.view_prefix(p, "view"),
                    keys.view_prefix(p, SHADOW_NAMESPACE),
                ],
            )
        else:
            await reset(keys=[shadow_checkpoint], args=[_pattern(keys, p, SHADOW_NAMESPACE)])
    return ShadowReport(diffs, events, time.perf_counter() - started, switching)
