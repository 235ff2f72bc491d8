"""The worker against a real Redis: reclaiming order, outcomes, shutdown, who is recorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.commands import CommandService, ProjectionWaiter
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.store.runs import GROUP
from service.worker.worker import Worker
from tests.integration.worker import handlers

MODULE = "tests.integration.worker.handlers"


@pytest.fixture(autouse=True)
def _reset() -> None:
    handlers.reset()


async def workflow(api: TestClient, handler: str, wid: str = "w", **extra: Any) -> None:
    body = {"target": {"type": "python", "handler": f"{MODULE}:{handler}"}, **extra}
    assert (await api.put(f"/v1/workflows/{wid}", json=body)).status in (200, 201)


async def run_now(api: TestClient, run_input: Any = None, wid: str = "w") -> str:
    r = await api.post(f"/v1/workflows/{wid}/runs", json={"input": run_input})
    assert r.status == 201
    return str((await r.json())["run_id"])


def make_worker(redis: Redis, keys: Keyspace, **options: Any) -> Worker:
    commands = CommandService(
        EventStore(redis, keys), ProjectionWaiter(redis, keys), wait_timeout_s=0
    )
    return Worker(redis, keys, commands, **options)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def until(check: Any, what: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def run_events(redis: Redis, keys: Keyspace) -> list[tuple[str, dict[str, Any], Any]]:
    """(type, data, meta) of every run event in the log, oldest first."""
    out = []
    for _id, fields in await redis.xrange(keys.log(0)):
        kind = fields[b"type"].decode()
        if kind.startswith("Run"):
            out.append((kind, orjson.loads(fields[b"data"]), orjson.loads(fields[b"meta"])))
    return out


async def test_a_busy_worker_takes_a_stale_entry_before_new_ones(
    api: TestClient, redis: Redis, keys: Keyspace
) -> None:
    await workflow(api, "sleep_input")
    lost = await run_now(api, {"sleep_s": 0})
    busy = await run_now(api, {"sleep_s": 1.5})
    new = [await run_now(api, {"sleep_s": 0.2}) for _ in range(3)]
    queue = keys.queue(0)
    await redis.xgroup_create(queue, GROUP, id="0", mkstream=True)
    # a consumer reads the first entry and is never heard of again
    assert await redis.xreadgroup(GROUP, "lost", {queue: ">"}, count=1)
    worker = make_worker(redis, keys, concurrency=1, idle_bound_ms=500)
    async with running(worker):
        await until(lambda: worker.stats.succeeded == 5, "every run to succeed")
    starts = [d["run_id"] for t, d, _ in await run_events(redis, keys) if t == "RunStarted"]
    # the lost entry goes stale while the one slot is busy; when the slot frees, the
    # stale entry is taken ahead of the new ones waiting
    assert set(starts[:2]) == {busy, lost}
    assert starts[2:] == new
    assert worker.stats.reclaimed == 1


async def test_a_failure_that_speaks_of_a_timeout_is_not_a_timeout(
    api: TestClient, redis: Redis, keys: Keyspace
) -> None:
    await workflow(api, "says_timed_out", retry={"max_attempts": 1})
    await workflow(api, "async_slow", "slow", timeout="200ms", retry={"max_attempts": 1})
    failed, timed_out = await run_now(api), await run_now(api, wid="slow")
    worker = make_worker(redis, keys, concurrency=2)
    async with running(worker):
        await until(lambda: worker.stats.failed == 2, "both runs to end")
    ends = {d["run_id"]: t for t, d, _ in await run_events(redis, keys)}
    assert (ends[failed], ends[timed_out]) == ("RunFailed", "RunTimedOut")


async def test_run_events_name_the_worker_one_way(
    api: TestClient, redis: Redis, keys: Keyspace
) -> None:
    await workflow(api, "async_ok")
    run_id = await run_now(api, {"n": 1})
    worker = make_worker(redis, keys)
    async with running(worker):
        await until(lambda: worker.stats.succeeded == 1, "the run to succeed")
    recorded = {
        (t, who)
        for t, data, meta in await run_events(redis, keys)
        if data["run_id"] == run_id and t != "RunQueued"
        for who in (meta["actor"], data.get("worker", meta["actor"]))
    }
    assert recorded == {(t, f"worker:{worker.consumer}") for t in ("RunStarted", "RunSucceeded")}


async def test_shutdown_cancels_runs_past_the_drain_time_and_waits_for_them(
    api: TestClient, redis: Redis, keys: Keyspace
) -> None:
    await workflow(api, "slow_to_stop")
    await run_now(api)
    worker = make_worker(redis, keys, drain_timeout_s=0.1)
    async with running(worker) as task:
        await until(handlers.started.is_set, "the handler to start")
    assert task.done()
    # the run unwound before the worker returned, and before its session was closed
    assert handlers.finished.is_set()
    assert not worker.slots.tasks
    assert worker.attempts.session is not None and worker.attempts.session.closed
    pending = await redis.xpending(keys.queue(0), GROUP)
    assert pending["pending"] == 1  # left for another worker to reclaim
