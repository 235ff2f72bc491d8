"""Outbound safety end to end: runs whose webhook points at loopback, in every form,
fail with the refusal as their attempt's error, and nothing reaches the receiver.

Loopback only: a test never sends anything to another address, not even to see it
refused. The worker resolves names through a test table, never through DNS.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api.app import create_app
from service.commands import CommandService, ProjectionWaiter
from service.config import Settings
from service.domain.addresses import PUBLIC_ONLY, OutboundPolicy
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.worker.worker import Worker
from tests.integration.runs.target import Target, local_target
from tests.integration.runs.test_runs import run_of
from tests.integration.worker.resolver import StaticResolver

HINT = "refused; set CRONSTREAM_ALLOW_PRIVATE_TARGETS=1 or CRONSTREAM_TARGET_ALLOWLIST to allow it"


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with local_target() as t:
        yield t


@pytest.fixture
async def other() -> AsyncIterator[Target]:
    """A receiver on another loopback address."""
    async with local_target("127.1.2.3") as t:
        yield t


@pytest.fixture
async def api(redis: Redis, settings: Settings) -> AsyncIterator[TestClient]:
    """The API with the real clock. Its own policy lets literal loopback URLs be
    defined, as a workflow defined before the policy changed would be."""
    client = TestClient(TestServer(create_app(settings, redis), host="127.0.0.1"))
    await client.start_server()
    yield client
    await client.close()


async def start_worker(
    redis: Redis, keys: Keyspace, outbound: OutboundPolicy | None
) -> tuple[asyncio.Event, asyncio.Task[None]]:
    commands = CommandService(
        EventStore(redis, keys), ProjectionWaiter(redis, keys), wait_timeout_s=0
    )
    resolver = StaticResolver({"hooks.test": [["127.0.0.1"]]})
    worker = Worker(
        redis,
        keys,
        commands,
        concurrency=4,
        idle_bound_ms=2000,
        outbound=outbound,
        resolver=resolver,
    )
    stop = asyncio.Event()
    return stop, asyncio.create_task(worker.run(stop))


@pytest.fixture
async def guarded(redis: Redis, keys: Keyspace) -> AsyncIterator[None]:
    """A worker that delivers to public addresses only."""
    stop, task = await start_worker(redis, keys, PUBLIC_ONLY)
    yield
    stop.set()
    await asyncio.wait_for(task, 20)


async def hook(api: TestClient, wid: str, url: str) -> int:
    body = {"target": {"type": "http", "url": url}, "retry": {"max_attempts": 3}}
    r = await api.put(f"/v1/workflows/{wid}", json=body)
    return r.status


async def run_now(api: TestClient, wid: str) -> str:
    r = await api.post(f"/v1/workflows/{wid}/runs", json={"input": {"n": 1}})
    assert r.status == 201, await r.text()
    return str((await r.json())["run_id"])


async def final(api: TestClient, wid: str) -> dict[str, Any]:
    return await run_of(api, await run_now(api, wid), "succeeded", "failed")


FORMS = [
    ("http://127.0.0.1:{port}/ok", "target address 127.0.0.1 is loopback"),
    ("http://localhost:{port}/ok", "target address 127.0.0.1 (localhost) is loopback"),
    ("http://[::ffff:127.0.0.1]:{port}/ok", "target address ::ffff:"),
    ("http://hooks.test:{port}/ok", "target address 127.0.0.1 (hooks.test) is loopback"),
]


@pytest.mark.usefixtures("guarded")
async def test_every_loopback_form_fails_the_run_once_with_the_refusal(
    api: TestClient, target: Target, other: Target
) -> None:
    port = int(target.url.rsplit(":", 1)[1])
    forms = [(url.format(port=port), said) for url, said in FORMS]
    forms.append((other.url + "/ok", "target address 127.1.2.3 is loopback"))
    for n, (url, said) in enumerate(forms):
        assert await hook(api, f"hook-{n}", url) in (200, 201)
        run = await final(api, f"hook-{n}")
        # not retried although the workflow allows 3 attempts: a retry cannot help
        assert run["status"] == "failed", url
        [attempt] = run["attempts"]
        assert attempt["error"].startswith(said) and attempt["error"].endswith(HINT), url
    assert not target.calls and not other.calls
    # nothing was sent, so no host's circuit breaker counts anything
    assert (await (await api.get("/v1/breakers")).json())["items"] == []


@pytest.fixture
async def redirecting(other: Target) -> AsyncIterator[str]:
    """A receiver on 127.0.0.1 that answers 302 to ``other``'s address: its URL."""

    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": other.url + "/ok"})

    app = web.Application()
    app.router.add_post("/moved", moved)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}/moved"
    await server.close()


async def test_a_redirect_to_another_loopback_address_is_not_followed(
    api: TestClient, redis: Redis, keys: Keyspace, other: Target, redirecting: str
) -> None:
    assert await hook(api, "moved", redirecting) in (200, 201)
    stop, task = await start_worker(redis, keys, OutboundPolicy.parse(allowlist=["127.0.0.1/32"]))
    try:
        run = await final(api, "moved")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    assert run["status"] == "failed"
    [attempt] = run["attempts"]
    assert attempt["error"] == f"HTTP 302: redirect to {other.url}/ok not followed"
    assert not other.calls


async def test_with_the_allowlist_or_the_flag_set_loopback_deliveries_work(
    api: TestClient,
    redis: Redis,
    keys: Keyspace,
    target: Target,
    other: Target,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker takes its policy from the environment, as serve's does."""
    monkeypatch.delenv("CRONSTREAM_ALLOW_PRIVATE_TARGETS")
    monkeypatch.setenv("CRONSTREAM_TARGET_ALLOWLIST", "127.0.0.1/32")
    assert await hook(api, "allowed", target.url + "/ok") in (200, 201)
    assert await hook(api, "elsewhere", other.url + "/ok") in (200, 201)
    stop, task = await start_worker(redis, keys, None)
    try:
        assert (await final(api, "allowed"))["status"] == "succeeded"
        refused = await final(api, "elsewhere")
        assert refused["attempts"][0]["error"].startswith("target address 127.1.2.3 is loopback")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    assert len(target.calls["ok"]) == 1 and not other.calls

    monkeypatch.setenv("CRONSTREAM_ALLOW_PRIVATE_TARGETS", "1")
    stop, task = await start_worker(redis, keys, None)
    try:
        assert (await final(api, "elsewhere"))["status"] == "succeeded"
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    assert len(other.calls["ok"]) == 1


LITERALS = [
    "http://127.0.0.1:9/hook",
    "http://127.1.2.3/hook",
    "http://[::1]:8080/",
    "http://[::ffff:127.0.0.1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://0.0.0.0:9/",
]


async def test_a_literal_refused_address_is_refused_when_the_workflow_is_defined(
    redis: Redis, settings: Settings
) -> None:
    strict = replace(settings, allow_private_targets=False)
    client = TestClient(TestServer(create_app(strict, redis), host="127.0.0.1"))
    await client.start_server()
    try:
        for url in LITERALS:
            r = await client.put("/v1/workflows/w", json={"target": {"type": "http", "url": url}})
            assert r.status == 422, url
            problem = await r.json()
            [error] = problem["errors"]
            assert error["field"] == "target.url" and error["message"].endswith(HINT), url
        assert (await client.get("/v1/workflows/w")).status == 404
        # a name is judged at delivery, by what it resolves to
        for n, url in enumerate(["http://localhost:9/", "https://hooks.example.com/x"]):
            assert await hook(client, f"named-{n}", url) == 201
        # and the allowlist lifts it
        listed = replace(strict, target_allowlist=("127.0.0.0/8",))
        other = TestClient(TestServer(create_app(listed, redis), host="127.0.0.1"))
        await other.start_server()
        try:
            assert await hook(other, "listed", "http://127.1.2.3/hook") == 201
        finally:
            await other.close()
    finally:
        await client.close()
