"""A person watching the log sees one line per tick: what fired, was skipped or missed."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.clock import FixedClock
from service.store.keys import Keyspace
from tests.integration.ticker.helpers import MINUTE, leader, setup


async def test_each_tick_says_what_it_decided(
    api: TestClient,
    redis: Redis,
    keys: Keyspace,
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cronstream.fires")
    await setup(api, "a", target="none")
    await setup(api, "b", target="none", policy={"catchup": "latest"})
    for sid in "cdef":
        await setup(api, sid, target="none", spec={"cron": ["0 0 1 1 *"]})
    ticker = await leader(redis, keys, clock)
    clock.advance(MINUTE)
    await ticker.tick(0)
    clock.advance(5 * MINUTE)  # b misses four minutes and runs the latest
    await ticker.tick(0)
    for sid in "cdef":  # due now: four more fired, only three named
        await api.patch(f"/v1/schedules/{sid}", json={"spec": {"cron": ["* * * * *"]}})
    clock.advance(MINUTE)
    await ticker.tick(0)
    lines = [r.getMessage() for r in caplog.records if r.name == "cronstream.fires"]
    head, _, names = lines[2].partition(" (")
    assert head == "partition 0: fired 6" and names.endswith(", …)")
    assert len(set(names.removesuffix(", …)").split(", ")) & set("abcdef")) == 3
    assert lines[0] == "partition 0: fired 2 (a, b)"
    assert lines[1] == "partition 0: fired 2 (a, b), missed 8 (a, b)"
