"""Runs listed over several partitions: a run's record is kept in its schedule's (or
workflow's) partition, not in the one its own id hashes to, and every list finds it."""

from __future__ import annotations

from dataclasses import replace

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api.app import create_app
from service.clock import FixedClock
from service.config import Settings
from service.store.keys import Keyspace
from tests.integration.api.helpers import create_schedule, put_workflow

PARTITIONS = 4


async def test_every_run_is_listed_whatever_partition_keeps_it(
    redis: Redis, settings: Settings, clock: FixedClock
) -> None:
    app = create_app(replace(settings, partitions=PARTITIONS), redis, clock=clock)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await put_workflow(client)
        made: set[str] = set()
        sids = [f"s{i}" for i in range(8)]
        for sid in sids:
            await create_schedule(client, sid)
            for _ in range(2):
                r = await client.post(f"/v1/schedules/{sid}/trigger", json={})
                assert r.status == 201, await r.text()
                made.add((await r.json())["run_id"])
        r = await client.post("/v1/workflows/scan/runs", json={})
        made.add((await r.json())["run_id"])
        keys = Keyspace(settings.key_prefix, PARTITIONS)
        # the case the lists must handle: runs kept away from their own id's partition
        elsewhere = [
            run_id
            for run_id in made
            if not await redis.exists(keys.view(keys.partition_of(run_id), f"run:{run_id}"))
        ]
        assert elsewhere
        listed: list[str] = []
        cursor = None
        for _ in range(10):
            query = {"limit": "5", **({"cursor": cursor} if cursor else {})}
            page = await (await client.get("/v1/runs", params=query)).json()
            listed += [run["id"] for run in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(listed) == sorted(made)
        for sid in sids:
            page = await (await client.get(f"/v1/schedules/{sid}/runs")).json()
            assert len(page["items"]) == 2
        for run_id in made:
            assert (await client.get(f"/v1/runs/{run_id}")).status == 200
