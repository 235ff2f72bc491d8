"""The ticker's batch stays right when Redis executed it but the reply was lost.

The service's own client (``service.connection.connect``: it retries a call on a dropped
connection) talks to Redis through a proxy that throws away the reply to one batch
call after Redis executed it; the client sends the same call again, and the high-water
mark of each schedule makes the repeat append nothing.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.clock import FixedClock
from service.connection import connect
from service.store.fires import fire_source
from service.store.keys import Keyspace
from service.ticker.ticker import Ticker
from tests.fault.proxy import DropReplyProxy
from tests.integration.ticker.helpers import MINUTE, fired, of_type, setup

pytestmark = pytest.mark.slow


async def test_a_batch_whose_reply_was_lost_fires_nothing_twice(
    api: TestClient, redis: Redis, redis_url: str, keys: Keyspace, clock: FixedClock
) -> None:
    await setup(api, "s00", target="http")
    sids = ["s00", *(f"s{i:02d}" for i in range(1, 20))]
    for sid in sids[1:]:
        body = {"id": sid, "workflow_id": "wf", "spec": {"cron": ["* * * * *"]}}
        assert (await api.post("/v1/schedules", json=body)).status == 201
    # loaded up front, so the call whose reply is lost is the batch itself
    await redis.script_load(fire_source())
    port = urlparse(redis_url).port
    assert port is not None
    async with DropReplyProxy(port) as proxy:
        client = connect(proxy.url, timeout_s=5.0)
        try:
            ticker = Ticker(client, keys, clock=clock)
            assert await ticker.leases[0].acquire()
            await ticker.tick(0)
            clock.advance(MINUTE)
            proxy.drop_reply_to(b"\r\nbatch\r\n")
            assert await ticker.tick(0) == len(sids)
            assert proxy.dropped == 1
        finally:
            await client.aclose()
    # the repeat found every schedule fired already: nothing appended twice
    assert ticker.stats.stale == len(sids) and ticker.stats.fired == 0
    for sid in sids:
        assert await fired(redis, keys, sid) == ["2026-01-15T12:01:00Z"]
        assert len(await of_type(redis, keys, sid, "RunQueued")) == 1
    assert await redis.xlen(keys.queue(0)) == len(sids)
