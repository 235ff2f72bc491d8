"""A Redis that stops (SIGSTOP) while runs are started and finished.

The worker's client times out on calls that Redis has already read, retries them on
a new connection, and once Redis continues it executes both the first call and the
retries. Every run must still have one start per attempt and one result.

Whether a pause catches a script call in flight is up to timing; the tests in
test_run_retry.py lose a reply deterministically for every run action.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from service.api.app import create_app
from service.commands import CommandService, ProjectionWaiter
from service.config import Settings
from service.connection import connect
from service.store.embedded import RedisProcess, start_redis_server
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.worker.worker import Worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

RUNS = 400
PAUSES = 3
PAUSE_S = 2.5


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = start_redis_server(tmp_path / "redis", appendonly=False)
    yield server
    os.kill(server.pid, signal.SIGCONT)
    server.stop()


async def test_runs_start_once_through_a_redis_pause(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    settings = Settings(
        redis_url=own_redis.url, data_dir=tmp_path / "data", partitions=1, auth=False
    )
    keys = Keyspace(settings.key_prefix, settings.partitions)
    direct = Redis.from_url(own_redis.url, socket_timeout=10)
    api = TestClient(TestServer(create_app(settings, direct), host="127.0.0.1"))
    await api.start_server()
    handler = {"type": "python", "handler": "tests.integration.runs.handlers:nap"}
    assert (await api.put("/v1/workflows/w", json={"target": handler})).status in (200, 201)
    # calls Redis has read time out and are retried while it is stopped: the service's
    # client, with more retries, so that no call gives up even on a loaded machine (a
    # start that gives up is rightly started again once reclaimed); the timeout stays
    # above the worker's blocking read
    client = connect(own_redis.url, timeout_s=1.5)
    client.connection_pool.connection_kwargs["retry"] = Retry(
        ExponentialBackoff(cap=0.5, base=0.02), retries=30
    )
    commands = CommandService(
        EventStore(client, keys), ProjectionWaiter(client, keys), wait_timeout_s=0
    )
    worker = Worker(client, keys, commands, concurrency=16, idle_bound_ms=15_000)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        for _ in range(RUNS):
            assert (await api.post("/v1/workflows/w/runs", json={})).status == 201
        for pause in range(1, PAUSES + 1):
            await started(direct, keys, RUNS * pause // (PAUSES + 1), timeout_s=20)
            os.kill(own_redis.pid, signal.SIGSTOP)
            await asyncio.sleep(PAUSE_S)  # the fault itself: Redis stays stopped this long
            os.kill(own_redis.pid, signal.SIGCONT)
        results = await finished_runs(direct, keys, RUNS, timeout_s=60)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await client.aclose()
        await api.close()
    starts = await count(direct, keys, "RunStarted")
    assert results == Counter({"RunSucceeded": RUNS})
    assert set(starts.values()) == {1}, starts
    await direct.aclose()


async def count(redis: Redis, keys: Keyspace, type_: str) -> Counter[str]:
    found: Counter[str] = Counter()
    for _, fields in await redis.xrange(keys.log(0)):
        if fields[b"type"] == type_.encode():
            found[orjson.loads(fields[b"data"])["run_id"]] += 1
    return found


async def started(redis: Redis, keys: Keyspace, runs: int, timeout_s: float) -> None:
    """Wait (with a deadline) until the worker is well into the queue."""
    deadline = time.monotonic() + timeout_s
    while sum((await count(redis, keys, "RunStarted")).values()) < runs:
        assert time.monotonic() < deadline, "the worker started nothing"
        await asyncio.sleep(0.01)


async def finished_runs(redis: Redis, keys: Keyspace, runs: int, timeout_s: float) -> Counter[str]:
    """Results in the log once every run has one (polled with a deadline)."""
    deadline = time.monotonic() + timeout_s
    final = (b"RunSucceeded", b"RunFailed", b"RunTimedOut", b"RunDeadLettered", b"RunCancelled")
    while True:
        results: Counter[str] = Counter()
        for _, fields in await redis.xrange(keys.log(0)):
            if fields[b"type"] in final:
                results[fields[b"type"].decode()] += 1
        if sum(results.values()) >= runs or time.monotonic() > deadline:
            return results
        await asyncio.sleep(0.1)
