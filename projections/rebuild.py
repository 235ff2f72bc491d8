"""Rebuild the views from the log alone: in place, or beside the live ones (shadow).

``rebuild`` drops every view and replays the log into it. ``shadow_rebuild``
builds the views into the ``shadow`` namespace with their own checkpoint while
the live ones keep serving, reports how the two differ, and switches to the
shadow only when they agree or when forced — so a projection change can be
checked on production data before it goes live. Dropping and switching views
run in bounded batches while the projection is held (``switch``), never as one
long script.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from projections import records
from projections.projector import Projector
from projections.switch import BATCH, Views, drop_views, scan_names, switch_views
from service.errors import CronstreamError
from service.store.archive_reader import read_all
from service.store.archive_record import locate
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
    # an archive that cannot give the trimmed events fails the rebuild, never thins it
    located = await locate(projector.redis, projector.keys, partition, archive_dir)
    await located.require(start or "0-0")
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
    redis: Redis,
    keys: Keyspace,
    namespace: str = "view",
    archive_dir: Path | None = None,
    *,
    batch: int = BATCH,
) -> RebuildReport:
    """Drop the views and rebuild them from the log (and the archive, if the log was trimmed).

    With an archive the views are built beside the live ones and switched in, so a
    running projector never sees the views half rebuilt from a trimmed log.
    """
    if archive_dir is not None and namespace == "view":
        report = await shadow_rebuild(
            redis, keys, True, force=True, archive_dir=archive_dir, batch=batch
        )
        return RebuildReport(keys.partitions, 0, report.events, report.seconds)
    for p in range(keys.partitions):
        await check_untrimmed(redis, keys, p)
    projector = Projector(redis, keys, namespace=namespace)
    views = Views(projector.name, namespace)
    started = time.perf_counter()
    dropped = 0
    events = 0
    for p in range(keys.partitions):
        dropped += await drop_views(redis, keys, p, views, batch)
        events += await projector.catch_up(p)
    return RebuildReport(keys.partitions, dropped, events, time.perf_counter() - started)


# -- shadow rebuild (blue/green) ---------------------------------------------------------

SHADOW_NAMESPACE = "shadow"
SHADOW_PROJECTION = "views-shadow"
SHADOW = Views(SHADOW_PROJECTION, SHADOW_NAMESPACE)
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


async def _names(redis: Redis, keys: Keyspace, p: int, namespace: str) -> set[str]:
    out: set[str] = set()
    async for names in scan_names(redis, keys.view_prefix(p, namespace), READ_CHUNK):
        out.update(names)
    return out


async def _contents(redis: Redis, keys: list[str], names: list[str]) -> list[Any]:
    """Each key's type and value, read in a form that does not depend on encoding (nor
    on whether a record is stored compact)."""
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
    for name, kind, value in zip(names, kinds, values, strict=True):
        if kind == "string" and value is not None:
            value = records.decode(name, value)  # compare values, not bytes
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
        left = await _contents(redis, [keys.view(p, n, "view") for n in chunk], chunk)
        right = await _contents(redis, [keys.view(p, n, SHADOW_NAMESPACE) for n in chunk], chunk)
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
    batch: int = BATCH,
) -> ShadowReport:
    """Build every view into the ``shadow`` namespace, diff it against the live views,
    and switch to it when ``switch`` and the diff is empty (or ``force``); otherwise
    drop the shadow keys. The live views are untouched unless switched."""
    live = Projector(redis, keys)
    shadow = Projector(redis, keys, name=SHADOW_PROJECTION, namespace=SHADOW_NAMESPACE)
    started = time.perf_counter()
    diffs: list[PartitionDiff] = []
    events = 0
    for p in range(keys.partitions):
        await drop_views(redis, keys, p, SHADOW, batch)
        applied, d = await _build_and_diff(live, shadow, p, archive_dir)
        events += applied
        diffs.append(d)
    switching = switch and (force or all(d.empty for d in diffs))
    for p in range(keys.partitions):
        if switching:
            events += await _switch(live, shadow, p, batch)
        else:
            await drop_views(redis, keys, p, SHADOW, batch)
    return ShadowReport(diffs, events, time.perf_counter() - started, switching)


async def _build_and_diff(
    live: Projector, shadow: Projector, p: int, archive_dir: Path | None
) -> tuple[int, PartitionDiff]:
    """Build a partition's shadow views, settle, and compare them with the live ones."""
    applied = await catch_up_with_archive(shadow, p, archive_dir)
    more, live_at, shadow_at = await _settle(live, shadow, p)
    d = PartitionDiff(p, live_at, shadow_at)
    await diff_views(live.redis, live.keys, p, d)
    if await live.checkpoint(p) != live_at:
        d.live_position = await live.checkpoint(p)  # moved while comparing: unsettled
    return applied + more, d


async def _switch(live: Projector, shadow: Projector, p: int, batch: int) -> int:
    """Switch a partition's live views to the shadow; return the events the shadow
    applied once the live projection was held."""
    caught_up: list[int] = []

    async def past_the_live_views() -> None:
        caught_up.append(await shadow.catch_up(p))

    await switch_views(
        live.redis,
        live.keys,
        p,
        Views(live.name, live.namespace),
        SHADOW,
        past_the_live_views,
        batch,
    )
    return sum(caught_up)
