"""Every run action stays right when Redis executed it but the reply was lost.

The service's own client (``service.connection.connect``: retries on a dropped
connection or a timeout) talks to Redis through a proxy that throws away one
reply after Redis executed the call. The client then sends the same call again.
Each action must append its events once and answer the caller as the first
execution would have.
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
from service.store.keys import Keyspace
from service.store.runs import GROUP, RunStore
from service.store.scripts import source
from tests.fault.proxy import DropReplyProxy

pytestmark = pytest.mark.slow


@pytest.fixture
async def proxy(redis: Redis, redis_url: str) -> AsyncIterator[DropReplyProxy]:
    # loaded up front, so the call whose reply is lost is the script itself
    await redis.script_load(source("service.store", "runs.lua"))
    port = urlparse(redis_url).port
    assert port is not None
    async with DropReplyProxy(port) as running:
        yield running


@pytest.fixture
async def proxied(proxy: DropReplyProxy) -> AsyncIterator[Redis]:
    client = connect(proxy.url, timeout_s=5.0)
    yield client
    await client.aclose()


@pytest.fixture
async def proxied_api(
    proxied: Redis, settings: Settings, clock: FixedClock
) -> AsyncIterator[TestClient]:
    client = TestClient(
        TestServer(create_app(settings, proxied, clock=clock, projector=False), host="127.0.0.1")
    )
    await client.start_server()
    yield client
    await client.close()


async def events_of(redis: Redis, keys: Keyspace, type_: str) -> list[dict[str, Any]]:
    entries = await redis.xrange(keys.log(0))
    return [
        orjson.loads(fields[b"data"]) for _, fields in entries if fields[b"type"] == type_.encode()
    ]


async def queued_run(redis: Redis, keys: Keyspace, workflow_id: str = "wf") -> tuple[str, str]:
    """A run of a workflow queued directly (no proxy): (run id, its queue entry id)."""
    runs = RunStore(redis, keys)
    outcome, run_id = await runs.create(
        workflow_id,
        "run_" + workflow_id,
        {"type": "api", "source": "t"},
        None,
        meta={},
        now_ms=1,
    )
    assert outcome == "OK"
    try:
        await redis.xgroup_create(keys.queue(0), GROUP, id="0", mkstream=True)
    except Exception:  # the group exists already
        pass
    reply: Any = await redis.xreadgroup(GROUP, "w1", {keys.queue(0): ">"}, count=1)
    entry_id = reply[0][1][0][0].decode()
    return run_id, entry_id


async def test_a_retried_start_starts_one_attempt(
    redis: Redis, keys: Keyspace, proxy: DropReplyProxy, proxied: Redis
) -> None:
    run_id, entry = await queued_run(redis, keys)
    proxy.drop_reply_to(b"start", run_id.encode())
    status, started = await RunStore(proxied, keys).start(
        0, "wf", "workflow", run_id, entry, "worker:w1", 2, "1970-01-01T00:00:00Z"
    )
    assert proxy.dropped == 1
    assert status == "OK" and started is not None
    assert started.attempt == 1 and started.token == f"{entry}/1"
    assert len(await events_of(redis, keys, "RunStarted")) == 1
    fields = await redis.hmget(keys.run(0, run_id), ["attempt", "deliveries"])
    assert fields == [b"1", b"1"]


async def test_a_retried_finish_is_accepted_once(
    redis: Redis, keys: Keyspace, proxy: DropReplyProxy, proxied: Redis
) -> None:
    run_id, entry = await queued_run(redis, keys)
    runs = RunStore(redis, keys)
    _, started = await runs.start(0, "wf", "workflow", run_id, entry, "w", 2, "x")
    assert started is not None
    proxy.drop_reply_to(b"finish", run_id.encode())
    status, _ = await RunStore(proxied, keys).finish(
        0,
        "wf",
        "workflow",
        run_id,
        outcome="succeeded",
        meta={},
        now_ms=3,
        token=started.token,
        entry_id=entry,
        final_data={"run_id": run_id, "attempt": 1},
    )
    assert proxy.dropped == 1
    assert status == "OK"  # not STALE: the first call's answer
    assert len(await events_of(redis, keys, "RunSucceeded")) == 1
    assert (await redis.xpending(keys.queue(0), GROUP))["pending"] == 0


async def create_workflow(api: TestClient, wid: str = "wf") -> None:
    body = {"target": {"type": "python", "handler": "tests.integration.runs.handlers:noop"}}
    response = await api.put(f"/v1/workflows/{wid}", json=body)
    assert response.status in (200, 201), await response.text()


@pytest.mark.parametrize("idempotency_key", [None, "key-1"])
async def test_a_retried_run_now_answers_the_run_it_queued(
    redis: Redis,
    keys: Keyspace,
    proxy: DropReplyProxy,
    proxied_api: TestClient,
    api: TestClient,
    idempotency_key: str | None,
) -> None:
    await create_workflow(api)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    proxy.drop_reply_to(b"create", b"wf")
    response = await proxied_api.post("/v1/workflows/wf/runs", json={}, headers=headers)
    assert proxy.dropped == 1
    assert response.status == 201, await response.text()
    body = await response.json()
    queued = await events_of(redis, keys, "RunQueued")
    assert [e["run_id"] for e in queued] == [body["run_id"]]
    assert body["run_id"] and body["duplicate"] is False


async def test_a_retried_cancel_of_a_queued_run_cancels_it_once(
    redis: Redis, keys: Keyspace, proxy: DropReplyProxy, proxied_api: TestClient
) -> None:
    run_id, _ = await queued_run(redis, keys)
    proxy.drop_reply_to(b"cancel", run_id.encode())
    response = await proxied_api.post(f"/v1/runs/{run_id}/cancel", json={})
    assert proxy.dropped == 1
    assert response.status == 202, await response.text()  # not 409 "already finished"
    assert (await response.json())["outcome"] == "cancelled"
    assert len(await events_of(redis, keys, "RunCancelled")) == 1


async def test_a_retried_cancel_of_a_running_run_asks_once(
    redis: Redis, keys: Keyspace, proxy: DropReplyProxy, proxied_api: TestClient
) -> None:
    run_id, entry = await queued_run(redis, keys)
    await RunStore(redis, keys).start(0, "wf", "workflow", run_id, entry, "w", 2, "x")
    proxy.drop_reply_to(b"cancel", run_id.encode())
    response = await proxied_api.post(f"/v1/runs/{run_id}/cancel", json={"terminate": True})
    assert proxy.dropped == 1
    assert response.status == 202
    assert (await response.json())["outcome"] == "requested"
    assert len(await events_of(redis, keys, "RunCancelRequested")) == 1


async def test_a_retried_retry_requeues_a_failed_run_once(
    redis: Redis, keys: Keyspace, proxy: DropReplyProxy, proxied_api: TestClient
) -> None:
    run_id, entry = await queued_run(redis, keys)
    runs = RunStore(redis, keys)
    _, started = await runs.start(0, "wf", "workflow", run_id, entry, "w", 2, "x")
    assert started is not None
    await runs.finish(
        0,
        "wf",
        "workflow",
        run_id,
        outcome="failed",
        meta={},
        now_ms=3,
        token=started.token,
        entry_id=entry,
        final_data={"run_id": run_id, "attempt": 1},
    )
    length = await redis.xlen(keys.queue(0))
    proxy.drop_reply_to(b"revive", run_id.encode())
    response = await proxied_api.post(f"/v1/runs/{run_id}/retry")
    assert proxy.dropped == 1
    assert response.status == 202, await response.text()
    assert len(await events_of(redis, keys, "RunRequeued")) == 1
    assert await redis.xlen(keys.queue(0)) == length + 1  # queued again once, runs once
