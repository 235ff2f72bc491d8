"""A person watching the log sees each retry, failure and auto-pause, one line each."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.store.keys import Keyspace
from service.ticker.ticker import Ticker
from tests.integration.runs.target import Target
from tests.integration.runs.test_runs import (  # noqa: F401 (fixtures)
    eventually,
    live,
    run_of,
    schedule_for,
    target,
    trigger,
)


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == level and r.name == "cronstream.runs"
    ]


async def test_retries_failures_and_pauses_are_logged(
    live: TestClient,  # noqa: F811
    target: Target,  # noqa: F811
    redis: Redis,
    keys: Keyspace,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CS_TEST_SECRET", "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
    caplog.set_level(logging.INFO, logger="cronstream.runs")
    await schedule_for(live, target.url + "/down", sid="d")
    run_id = await trigger(live, "d")
    await run_of(live, run_id, "failed")
    retries = [m for m in lines(caplog, logging.INFO) if run_id in m]
    assert len(retries) == 2 and all("retry at" in m and "503" in m for m in retries)
    [failed] = [m for m in lines(caplog, logging.WARNING) if run_id in m]
    assert "of schedule d failed on attempt 3" in failed

    await schedule_for(
        live,
        target.url + "/gone",
        policy={"pause_on_failure": True},
        spec={"cron": ["* * * * * *"]},
    )
    ticker = Ticker(redis, keys)
    assert await ticker.leases[0].acquire()

    async def paused() -> dict[str, Any] | None:
        await ticker.tick(0)
        view: dict[str, Any] = await (await live.get("/v1/schedules/s")).json()
        return view if view["status"] == "paused" else None

    await eventually(paused)

    async def logged() -> bool:
        return any("schedule s paused" in m for m in lines(caplog, logging.WARNING))

    assert await eventually(logged)
