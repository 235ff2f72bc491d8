"""Listing runs by status: every status of the run lifecycle is a filter."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.domain.runs import RunStatus
from service.domain.timeutil import to_rfc3339
from service.store.keys import Keyspace
from service.store.runs import GROUP, RunStore
from tests.integration.api.helpers import problem
from tests.integration.runs.test_runs import eventually

HOUR = 3_600_000


async def test_runs_waiting_for_a_retry_are_listed_by_status(
    api: TestClient, redis: Redis, keys: Keyspace
) -> None:
    r = await api.put("/v1/workflows/w", json={"target": {"type": "none"}})
    assert r.status in (200, 201), await r.text()
    run_ids = [(await (await api.post("/v1/workflows/w/runs", json={})).json())["run_id"]]
    run_ids.append((await (await api.post("/v1/workflows/w/runs", json={})).json())["run_id"])
    await redis.xgroup_create(keys.queue(0), GROUP, id="0", mkstream=True)
    reply: Any = await redis.xreadgroup(GROUP, "test", {keys.queue(0): ">"}, count=1)
    entry = reply[0][1][0][0].decode()
    runs = RunStore(redis, keys)
    _, started = await runs.start(0, "w", "workflow", run_ids[0], entry, "test", 1, "t")
    assert started is not None
    retry_at = 2 * HOUR
    attempt = {
        "run_id": run_ids[0],
        "attempt": 1,
        "error": "boom",
        "retry_at": to_rfc3339(retry_at),
    }
    status, _ = await runs.finish(
        0, "w", "workflow", run_ids[0], outcome="retry", meta={}, now_ms=HOUR,
        token=started.token, entry_id=entry, attempt_data=attempt, retry_at_ms=retry_at,
    )  # fmt: skip
    assert status == "OK"

    async def listed(status: str) -> list[str]:
        r = await api.get("/v1/runs", params={"status": status})
        assert r.status == 200, await r.text()
        return [item["id"] for item in (await r.json())["items"]]

    async def retrying() -> bool:
        return await listed("retrying") == [run_ids[0]]

    await eventually(retrying)
    assert await listed("queued") == [run_ids[1]]
    for status in RunStatus:
        r = await api.get("/v1/runs", params={"status": status.value})
        assert r.status == 200, status
    await problem(await api.get("/v1/runs", params={"status": "waiting"}), 422)
