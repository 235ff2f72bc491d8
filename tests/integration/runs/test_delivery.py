"""Delivery guarantees with the run script directly: stale completions, dead letters."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.store.keys import Keyspace
from service.store.runs import GROUP, RunStore
from tests.integration.api.helpers import problem
from tests.integration.runs.test_runs import eventually


async def queued_run(api: TestClient, redis: Redis, keys: Keyspace) -> tuple[str, str]:
    await api.put(
        "/v1/workflows/w",
        json={"target": {"type": "python", "handler": "tests.integration.runs.handlers:noop"}},
    )
    r = await api.post("/v1/workflows/w/runs", json={})
    run_id = (await r.json())["run_id"]
    await redis.xgroup_create(keys.queue(0), GROUP, id="0", mkstream=True)
    reply: Any = await redis.xreadgroup(GROUP, "test", {keys.queue(0): ">"}, count=1)
    entry_id = reply[0][1][0][0].decode()
    return run_id, entry_id


async def test_a_reclaimed_runs_old_attempt_cannot_complete(
    api: TestClient, redis: Redis, keys: Keyspace
) -> None:
    run_id, entry = await queued_run(api, redis, keys)
    runs = RunStore(redis, keys)
    _, first = await runs.start(0, "w", "workflow", run_id, entry, "a", 1, "t")
    _, second = await runs.start(0, "w", "workflow", run_id, entry, "b", 2, "t")  # reclaimed
    assert first and second and first.token != second.token
    before = await redis.xlen(keys.log(0))
    outcome, _ = await runs.finish(
        0,
        "w",
        "workflow",
        run_id,
        outcome="succeeded",
        meta={},
        now_ms=3,
        token=first.token,
        entry_id=entry,
    )
    assert outcome == "STALE"
    assert await redis.xlen(keys.log(0)) == before
    assert (await redis.xpending(keys.queue(0), GROUP))["pending"] == 1  # not acked
    outcome, _ = await runs.finish(
        0,
        "w",
        "workflow",
        run_id,
        outcome="succeeded",
        meta={},
        now_ms=4,
        token=second.token,
        entry_id=entry,
    )
    assert outcome == "OK"
    assert (await redis.xpending(keys.queue(0), GROUP))["pending"] == 0


async def test_too_many_deliveries_dead_letter_a_run_that_can_be_retried(
    api: TestClient, redis: Redis, keys: Keyspace
) -> None:
    run_id, entry = await queued_run(api, redis, keys)
    runs = RunStore(redis, keys)
    outcomes = [
        (await runs.start(0, "w", "workflow", run_id, entry, "c", i, "t", 3))[0] for i in range(4)
    ]
    assert outcomes == ["OK", "OK", "OK", "DEAD"]
    async def listed() -> list[Any]:
        page = await (await api.get("/v1/runs", params={"status": "deadlettered"})).json()
        return list(page["items"])

    [dead] = await eventually(listed)
    assert dead["id"] == run_id and "3 times" in dead["dead_letter_reason"]
    assert await redis.zscore(keys.dead(0), run_id) is not None
    r = await api.post(f"/v1/runs/{run_id}/retry")
    assert r.status == 202
    assert await redis.zscore(keys.dead(0), run_id) is None
    async def requeued() -> bool:
        view = await (await api.get(f"/v1/runs/{run_id}")).json()
        return bool(view["status"] == "queued")

    await eventually(requeued)
    await problem(await api.post(f"/v1/runs/{run_id}/retry"), 409)  # queued, not dead
    await problem(await api.post("/v1/runs/nope/retry"), 404)
