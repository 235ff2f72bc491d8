"""A ticker that is behind says so: the gauge, a log line and /readyz."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service import telemetry
from service.clock import FixedClock
from service.store.keys import Keyspace
from tests.integration.ticker.helpers import MINUTE, leader, setup


def gauge() -> float | None:
    return telemetry.REGISTRY.get_sample_value(
        "cronstream_ticker_behind_seconds", {"partition": "0"}
    )


async def ticker_check(api: TestClient) -> object:
    r = await api.get("/readyz")
    body = await r.json()
    assert r.status == 200, body  # a ticker behind is a detail: the API serves
    return body["checks"]["ticker.0"]


async def test_a_ticker_behind_says_so_until_it_caught_up(
    api: TestClient,
    redis: Redis,
    keys: Keyspace,
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cronstream.ticker")
    await setup(api, target="none", policy={"catchup": "latest"})
    ticker = await leader(redis, keys, clock)
    await ticker.tick(0)
    assert await ticker_check(api) == {"behind_seconds": 0.0, "behind": False}
    clock.advance(10 * MINUTE + 1500)  # the ticker stalled; 12:01 has waited since
    # /readyz reads it from the due index, whichever process ticks
    assert await ticker_check(api) == {"behind_seconds": 541.5, "behind": True}
    await ticker.tick(0)
    assert ticker.stats.behind_ms[0] == 541_500 and gauge() == 541.5
    assert [r.getMessage() for r in caplog.records if r.name == "cronstream.ticker"] == [
        "partition 0: 541.5 s behind (due since 2026-01-15T12:01:00Z); catching up by "
        "each schedule's catch-up policy"
    ]
    assert await ticker_check(api) == {"behind_seconds": 0.0, "behind": False}
    await ticker.tick(0)
    assert ticker.stats.behind_ms[0] == 0 and gauge() == 0.0
    assert len([r for r in caplog.records if r.name == "cronstream.ticker"]) == 1
