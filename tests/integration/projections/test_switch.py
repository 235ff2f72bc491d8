"""Views are dropped and switched in bounded batches while the projection is held.

No script call walks the keyspace: MONITOR shows every command a script runs
(client type ``lua``) right after the EVALSHA that ran it, so the length of that
run is what one call did while Redis served nobody else.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from projections.projector import Projector
from projections.rebuild import SHADOW, rebuild, shadow_rebuild
from projections.switch import Hold, HoldLost, ProjectionHeld, Views, switch_views
from service.commands import SCHEDULES, CommandService, ProjectionWaiter, RequestContext
from service.domain import schedule as sched
from service.domain.spec import Spec
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.store.scripts import source
from tests.integration.api.helpers import SPEC
from tests.integration.projections.test_projector import dump_views

BATCH = 10
SCHEDULES_MADE = 40  # a record and a tag index each: 80 view keys and more, 8 batches
DEADLINE_S = 10.0
LIVE = Views("views", "view")


async def make_schedules(redis: Redis, keys: Keyspace, count: int) -> None:
    commands = CommandService(
        EventStore(redis, keys), ProjectionWaiter(redis, keys), wait_timeout_s=0.0
    )
    spec = Spec.model_validate(SPEC)
    for i in range(count):
        config = sched.ScheduleConfig(workflow_id="w", spec=spec, tags=[f"t{i}"])
        await commands.execute(
            SCHEDULES, f"s{i}", sched.CreateSchedule(f"s{i}", config), RequestContext()
        )
    await Projector(redis, keys).catch_up(0)


def sha(script: str) -> str:
    return hashlib.sha1(source("projections", script).encode(), usedforsecurity=False).hexdigest()


class Monitor:
    """Every command Redis runs while it is open, as (client type, command line)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.seen: list[tuple[str, str]] = []

    async def __aenter__(self) -> Monitor:
        self._monitor = self.redis.monitor()
        await self._monitor.__aenter__()
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for entry in self._monitor.listen():
            self.seen.append((str(entry.get("client_type")), str(entry["command"])))

    async def __aexit__(self, *exc: object) -> None:
        marker = f"end-{uuid.uuid4().hex}"
        await self.redis.echo(marker)
        deadline = time.monotonic() + DEADLINE_S
        while not any(marker in command for _, command in self.seen[-5:]):
            assert time.monotonic() < deadline, "MONITOR did not show the marker"
            await asyncio.sleep(0.01)
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task
        await self._monitor.__aexit__(None, None, None)

    def script_runs(self, shas: set[str]) -> list[int]:
        """For each EVALSHA of one of ``shas``, how many commands that call ran."""
        runs: list[int] = []
        counting = False
        for client, command in self.seen:
            if client == "lua":
                if counting:
                    runs[-1] += 1
                continue
            counting = command.startswith("EVALSHA") and command.split()[1] in shas
            if counting:
                runs.append(0)
        return runs


@pytest.fixture
async def monitor_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_no_drop_or_switch_call_runs_more_than_a_batch(
    redis: Redis, keys: Keyspace, monitor_client: Redis
) -> None:
    await make_schedules(redis, keys, SCHEDULES_MADE)
    live = await dump_views(redis, keys)
    assert len(live) > 8 * BATCH
    async with Monitor(monitor_client) as monitor:
        report = await shadow_rebuild(redis, keys, switch=True, force=True, batch=BATCH)
        rebuilt = await rebuild(redis, keys, batch=BATCH)
    assert report.switched and rebuilt.dropped_keys == len(live)
    assert await dump_views(redis, keys) == live
    runs = monitor.script_runs({sha("switch.lua"), sha("reset.lua"), sha("hold.lua")})
    # per key at most an EXISTS and a RENAME or DEL, plus the hold's check and renewal
    assert max(runs) <= 2 * BATCH + 2, max(runs)
    assert sum(runs) > 4 * len(live)  # every key was dropped or moved, a batch at a time
    assert len(runs) > 3 * len(live) // BATCH


async def test_a_held_projection_applies_nothing_until_released(
    redis: Redis, keys: Keyspace
) -> None:
    await make_schedules(redis, keys, 1)
    projector = Projector(redis, keys)
    before = await projector.checkpoint(0)
    async with Hold(redis, keys.projection_hold(0)):
        store = EventStore(redis, keys)
        commands = CommandService(store, ProjectionWaiter(redis, keys), wait_timeout_s=0.0)
        await commands.execute(SCHEDULES, "s0", sched.PauseSchedule("s0"), RequestContext())
        assert await projector.catch_up(0) == 0
        assert await projector.step(0, block_ms=10) == 0
        events = await store.read(0, before, 10)
        assert await projector.apply_batch(0, before, events) is False
        assert await projector.checkpoint(0) == before
    assert await projector.catch_up(0) == 1
    assert await projector.checkpoint(0) == await store.last_position(0)


async def test_a_second_rebuild_is_refused_while_one_holds_the_views(
    redis: Redis, keys: Keyspace
) -> None:
    await make_schedules(redis, keys, 2)
    live = await dump_views(redis, keys)
    async with Hold(redis, keys.projection_hold(0)):
        with pytest.raises(ProjectionHeld, match="held by another rebuild"):
            await rebuild(redis, keys)
    assert await dump_views(redis, keys) == live


async def test_a_switch_whose_hold_expired_changes_nothing(redis: Redis, keys: Keyspace) -> None:
    await make_schedules(redis, keys, 3)
    live = await dump_views(redis, keys)

    async def stall() -> Any:
        await redis.delete(keys.projection_hold(0))  # as if the TTL ran out

    with pytest.raises(HoldLost, match="run the rebuild again"):
        await switch_views(redis, keys, 0, LIVE, SHADOW, stall, BATCH)
    assert await dump_views(redis, keys) == live
