"""Triggers and backfills stay right when Redis executed the fire script but the reply
was lost.

The service's own client (``service.connection.connect``: retries on a dropped connection
or a timeout) talks to Redis through a proxy that throws away one reply after Redis
executed the call; the client then sends the same call again. Each fire must append
its events once and answer the caller as the first execution would have.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api.app import create_app
from service.clock import FixedClock
from service.config import Settings
from service.connection import connect
from service.store.fires import fire_source
from service.store.keys import Keyspace
from tests.fault.proxy import DropReplyProxy
from tests.integration.ticker.helpers import MINUTE, setup

pytestmark = pytest.mark.slow

NOW = "2026-01-15T12:00:00Z"  # the clock fixture's time


@pytest.fixture
async def proxy(redis: Redis, redis_url: str) -> AsyncIterator[DropReplyProxy]:
    # loaded up front, so the call whose reply is lost is the script itself
    await redis.script_load(fire_source())
    port = urlparse(redis_url).port
    assert port is not None
    async with DropReplyProxy(port) as running:
        yield running


@pytest.fixture
async def proxied_api(
    proxy: DropReplyProxy, settings: Settings, clock: FixedClock
) -> AsyncIterator[TestClient]:
    client = connect(proxy.url, timeout_s=5.0)
    api = TestClient(
        TestServer(create_app(settings, client, clock=clock, projector=False), host="127.0.0.1")
    )
    await api.start_server()
    yield api
    await api.close()
    await client.aclose()


async def events_of(redis: Redis, keys: Keyspace, type_: str) -> list[dict[str, Any]]:
    entries = await redis.xrange(keys.log(0))
    return [
        orjson.loads(fields[b"data"]) for _, fields in entries if fields[b"type"] == type_.encode()
    ]


@pytest.mark.parametrize("idempotency_key", [None, "key-1"])
async def test_a_retried_trigger_answers_the_run_it_fired(
    redis: Redis,
    keys: Keyspace,
    api: TestClient,
    proxy: DropReplyProxy,
    proxied_api: TestClient,
    idempotency_key: str | None,
) -> None:
    await setup(api)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    proxy.drop_reply_to(b'"mode":"api"', b'"sid":"s"')
    response = await proxied_api.post("/v1/schedules/s/trigger", json={}, headers=headers)
    assert proxy.dropped == 1
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["fired"] == 1 and body["duplicate"] is False  # not {"fired": 0, "duplicate"}
    [fired] = await events_of(redis, keys, "ScheduleFired")
    [queued] = await events_of(redis, keys, "RunQueued")
    assert body["run_id"] == fired["run_id"] == queued["run_id"]
    assert await redis.xlen(keys.queue(0)) == 1
    if idempotency_key:
        # the key still answers a repeat of the request with the run it fired
        again = await proxied_api.post("/v1/schedules/s/trigger", json={}, headers=headers)
        assert (await again.json())["run_id"] == body["run_id"]
        assert len(await events_of(redis, keys, "ScheduleFired")) == 1


async def test_a_retried_backfill_chunk_reports_what_it_fired(
    redis: Redis,
    keys: Keyspace,
    api: TestClient,
    clock: FixedClock,
    proxy: DropReplyProxy,
    proxied_api: TestClient,
) -> None:
    await setup(api, target="none")
    clock.advance(20 * MINUTE)
    # the second chunk of a 600-minute range: it holds the 501st nominal time
    start, second_chunk = "2026-01-14T12:00:00Z", b"2026-01-14T20:20:00Z"
    proxy.drop_reply_to(b'"mode":"backfill"', second_chunk)
    window = {"start": start, "end": "2026-01-14T21:59:00Z"}
    response = await proxied_api.post("/v1/schedules/s/backfill", json=window)
    assert proxy.dropped == 1
    assert response.status == 200, await response.text()
    assert await response.json() == {
        "nominal_times": 600,
        "fired": 600,
        "skipped": 0,
        "dropped": 0,
        "already_backfilled": 0,  # not the retried chunk's 100 times
    }
    fired = await events_of(redis, keys, "ScheduleFired")
    assert len(fired) == len({f["nominal_time"] for f in fired}) == 600
    assert len(await events_of(redis, keys, "RunSucceeded")) == 600
    # a real repeat of the request is a repeat: nothing more runs
    again = await proxied_api.post("/v1/schedules/s/backfill", json=window)
    assert (await again.json())["already_backfilled"] == 600
    assert len(await events_of(redis, keys, "ScheduleFired")) == 600
