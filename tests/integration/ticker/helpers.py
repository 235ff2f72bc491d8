from __future__ import annotations

from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.clock import FixedClock
from service.store.keys import Keyspace
from service.ticker.ticker import Ticker
from tests.integration.api.helpers import put_workflow

MINUTE = 60_000


async def schedule_events(redis: Redis, keys: Keyspace, sid: str) -> list[tuple[str, Any]]:
    p = keys.partition_of(sid)
    out = []
    for _eid, fields in await redis.xrange(keys.log(p)):
        if fields[b"sid"].decode() == sid:
            out.append((fields[b"type"].decode(), orjson.loads(fields[b"data"])))
    return out


async def fired(redis: Redis, keys: Keyspace, sid: str, trigger: str = "schedule") -> list[str]:
    return [
        d["nominal_time"]
        for t, d in await schedule_events(redis, keys, sid)
        if t == "ScheduleFired" and d["trigger"] == trigger
    ]


async def of_type(redis: Redis, keys: Keyspace, sid: str, kind: str) -> list[Any]:
    return [d for t, d in await schedule_events(redis, keys, sid) if t == kind]


async def leader(redis: Redis, keys: Keyspace, clock: FixedClock) -> Ticker:
    ticker = Ticker(redis, keys, clock=clock)
    for lease in ticker.leases:
        assert await lease.acquire()
    return ticker


async def setup(api: TestClient, sid: str = "s", target: str = "http", **body: Any) -> None:
    if target == "http":
        await put_workflow(api, "wf", target={"type": "http", "url": "http://127.0.0.1:9/"})
    else:
        await put_workflow(api, "wf", target={"type": target})
    payload = {"id": sid, "workflow_id": "wf", "spec": {"cron": ["* * * * *"]}, **body}
    r = await api.post("/v1/schedules", json=payload)
    assert r.status == 201, await r.text()
