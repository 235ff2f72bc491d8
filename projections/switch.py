"""Drop a projection's views, or switch them to a shadow build, in bounded batches.

Neither walks the keyspace inside Redis: the view keys are found with SCAN from
here (each SCAN call is short) and handed to a script ``batch`` keys at a time
(``reset.lua``, ``switch.lua``), so Redis is never blocked for longer than one
batch, whatever the number of views, and a ticker keeps its lease through a
rebuild. While the batches run the projection is held (``hold.lua``): its
projectors apply nothing, so no batch of theirs lands in half-dropped or
half-switched views. The hold has a time to live, renewed by every batch, so a
rebuild that dies frees the projection; its views then need the rebuild again.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from service.errors import Conflict
from service.store.eventstore import as_text
from service.store.keys import Keyspace
from service.store.scripts import load_script

BATCH = 500
HOLD_TTL_MS = 30_000


@dataclass(frozen=True)
class Views:
    """A projection (its checkpoint and hold) and the namespace its view keys live in."""

    projection: str
    namespace: str


class HoldLost(RuntimeError):
    """The projection's hold expired while its views were being rewritten."""

    def __init__(self, hold: str) -> None:
        super().__init__(
            f"{hold} expired while the views were rewritten (the process stalled for over "
            f"{HOLD_TTL_MS // 1000}s): run the rebuild again"
        )


class ProjectionHeld(Conflict):
    """Another rebuild holds the projection."""

    def __init__(self, hold: str) -> None:
        super().__init__(f"{hold} is held by another rebuild: try again when it has finished")


def _script(redis: Redis, name: str) -> AsyncScript:
    return load_script(redis, "projections", name)


async def scan_names(redis: Redis, prefix: str, batch: int) -> AsyncIterator[list[str]]:
    """The names (after ``prefix``) of the keys under it, ``batch`` at a time."""
    found: list[str] = []
    async for raw in redis.scan_iter(match=prefix.replace("[", "\\[") + "*", count=1000):
        found.append(as_text(raw)[len(prefix) :])
        if len(found) >= batch:
            yield found
            found = []
    if found:
        yield found


class Hold:
    """A projection held for the length of an ``async with``. The finishing script call
    releases it with the last change; leaving the block releases it in any case (a
    no-op then), so a failed rebuild does not freeze the views for the whole TTL."""

    def __init__(self, redis: Redis, key: str) -> None:
        self.key = key
        self.token = uuid.uuid4().hex
        self._script = _script(redis, "hold.lua")

    async def __aenter__(self) -> Hold:
        if not await self._script(keys=[self.key], args=["take", self.token, HOLD_TTL_MS]):
            raise ProjectionHeld(self.key)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._script(keys=[self.key], args=["release", self.token, HOLD_TTL_MS])

    def args(self, op: str) -> list[Any]:
        return [self.token, HOLD_TTL_MS, op]

    def check(self, reply: Any) -> int:
        if int(reply) < 0:
            raise HoldLost(self.key)
        return int(reply)


Batch = Callable[[list[str]], Awaitable[int]]


async def _batches(names: AsyncIterator[list[str]], call: Batch) -> int:
    total = 0
    async for chunk in names:  # ends with the SCAN
        total += await call(chunk)
    return total


async def drop_views(redis: Redis, keys: Keyspace, p: int, views: Views, batch: int = BATCH) -> int:
    """Delete a partition's view keys and its projection's checkpoint; return the number
    of view keys deleted. Projectors then rebuild the views from the log."""
    reset = _script(redis, "reset.lua")
    prefix = keys.view_prefix(p, views.namespace)
    async with Hold(redis, keys.projection_hold(p, views.projection)) as hold:
        fixed = [hold.key, keys.checkpoint(p, views.projection)]

        async def drop(names: list[str]) -> int:
            views = [prefix + name for name in names]
            return hold.check(await reset(keys=fixed + views, args=hold.args("drop")))

        dropped = await _batches(scan_names(redis, prefix, batch), drop)
        hold.check(await reset(keys=fixed, args=hold.args("finish")))
    return dropped


async def switch_views(
    redis: Redis,
    keys: Keyspace,
    p: int,
    live: Views,
    shadow: Views,
    before: Callable[[], Awaitable[object]],
    batch: int = BATCH,
) -> tuple[int, int]:
    """Replace a partition's live views by the shadow ones: drop the live keys the shadow
    lacks, rename every shadow key to its live name, move the shadow checkpoint to the
    live one. ``before`` runs once the live projection is held (to bring the shadow up to
    the log's end, past anything the live views applied). Return (dropped, moved)."""
    script = _script(redis, "switch.lua")
    live_prefix = keys.view_prefix(p, live.namespace)
    shadow_prefix = keys.view_prefix(p, shadow.namespace)
    async with Hold(redis, keys.projection_hold(p, live.projection)) as hold:
        fixed = [
            hold.key,
            keys.checkpoint(p, live.projection),
            keys.checkpoint(p, shadow.projection),
        ]
        await before()

        def run(op: str) -> Batch:
            async def call(names: list[str]) -> int:
                pairs = [k for n in names for k in (live_prefix + n, shadow_prefix + n)]
                return hold.check(await script(keys=fixed + pairs, args=hold.args(op)))

            return call

        dropped = await _batches(scan_names(redis, live_prefix, batch), run("orphans"))
        moved = await _batches(scan_names(redis, shadow_prefix, batch), run("rename"))
        hold.check(await script(keys=fixed, args=hold.args("finish")))
    return dropped, moved
