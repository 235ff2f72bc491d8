"""Signing secrets, stored or from ``secret_env``, appear nowhere but in the answer that
made them: not in the event feed or its stream, the views or any other Redis key
(the encrypted hash aside), the logs at DEBUG, the traces, an archive, the OpenAPI
document or a problem.

One scenario makes every kind of secret do every kind of work (a delivery, a failure,
a rotation), then every place is read back and searched for each secret in every form
a leak could take: the ``whsec_`` string, its base64 body, the key bytes it decodes to.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis

from service import telemetry
from service.api.app import create_app
from service.audit.archive import archive
from service.commands import CommandService, ProjectionWaiter
from service.config import SECRET_KEY_VAR, Settings
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.store.secrets import generate_key
from service.worker.worker import Worker
from tests.integration.runs.target import Target, local_target
from tests.integration.runs.test_runs import run_of

KEY = generate_key()
ENV_SECRET = "whsec_" + base64.b64encode(b"an env secret of 32 bytes, here!").decode()
SSE_READ_S = 5.0


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_provider(provider)
    yield exporter
    telemetry.use_provider(None)
    provider.shutdown()


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with local_target() as t:
        yield t


@pytest.fixture
async def live(
    redis: Redis, settings: Settings, keys: Keyspace, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TestClient]:
    monkeypatch.setenv(SECRET_KEY_VAR, KEY)
    monkeypatch.setenv("CS_HOOK_SECRET", ENV_SECRET)
    app = create_app(replace(settings, secret_key=KEY), redis)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    store, waiter = EventStore(redis, keys), ProjectionWaiter(redis, keys)
    worker = Worker(redis, keys, CommandService(store, waiter, wait_timeout_s=0), concurrency=4)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    yield client
    stop.set()
    await asyncio.wait_for(task, 20)
    await client.close()


def forms(secret: str) -> list[bytes]:
    """Every form a secret could leak in: as given, its base64 body, the key bytes."""
    body = secret.removeprefix("whsec_")
    return [secret.encode(), body.encode(), base64.b64decode(body)]


async def ok(api: TestClient, method: str, path: str, body: Any = None) -> Any:
    r = await api.request(method, path, json=body)
    assert r.status < 300, await r.text()
    return await r.json() if r.status != 204 else None


async def put(api: TestClient, wid: str, url: str, **signing: str) -> None:
    target = {"type": "http", "url": url, **signing}
    await ok(api, "PUT", f"/v1/workflows/{wid}", {"target": target, "retry": {"max_attempts": 1}})


async def run_to_end(api: TestClient, wid: str) -> None:
    made = await ok(api, "POST", f"/v1/workflows/{wid}/runs", {"input": {"n": 1}})
    await run_of(api, made["run_id"], "succeeded", "failed")


async def scenario(api: TestClient, url: str) -> list[str]:
    """Deliveries, failures and a rotation under stored and env secrets; the secrets."""
    await put(api, "stored", url + "/ok", signing="stored")
    await put(api, "failing", url + "/gone", signing="stored")
    await put(api, "env", url + "/ok", secret_env="CS_HOOK_SECRET")
    made = [
        await ok(api, "POST", "/v1/workflows/stored/signing-secrets"),
        await ok(api, "POST", "/v1/workflows/failing/signing-secrets"),
    ]
    for wid in ("stored", "failing", "env"):
        await run_to_end(api, wid)
    made.append(await ok(api, "POST", "/v1/workflows/stored/signing-secrets/rotate", {}))
    await run_to_end(api, "stored")
    await ok(api, "DELETE", f"/v1/workflows/stored/signing-secrets/{made[0]['id']}")
    await run_to_end(api, "stored")
    return [m["secret"] for m in made] + [ENV_SECRET]


async def served(api: TestClient) -> list[bytes]:
    """What the API serves about it all: feed, stream, views, document and problems."""
    texts = []
    for path in (
        "/v1/events?limit=1000",
        "/v1/runs?limit=500",
        "/v1/workflows",
        "/v1/workflows/stored",
        "/v1/workflows/stored/signing-secrets",
        "/openapi.json",
    ):
        r = await api.get(path)
        assert r.status == 200, path
        texts.append(await r.read())
    texts.append(await sse(api))
    for method, path in (
        ("POST", "/v1/workflows/stored/signing-secrets"),  # 409: one is live
        ("POST", "/v1/workflows/stored/signing-secrets/rotate"),
        ("DELETE", "/v1/workflows/stored/signing-secrets/sec_0000000000000000"),
        ("POST", "/v1/workflows/stored/signing-secrets/rotate?x=1"),
    ):
        r = await api.request(method, path, json={"grace": "999d"} if "x=1" in path else None)
        texts.append(await r.read())
    return texts


async def sse(api: TestClient) -> bytes:
    """The event stream from the start, until it has sent every event the feed has."""
    feed = await ok(api, "GET", "/v1/events", None)
    count = len(feed["items"])
    got = b""
    async with api.get("/v1/events/stream") as r:
        deadline = time.monotonic() + SSE_READ_S
        while got.count(b"\ndata:") + got.startswith(b"data:") < count:
            assert time.monotonic() < deadline, "the stream sent too little"
            async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                got += await r.content.readany()
    return got


async def redis_contents(redis: Redis, keys: Keyspace) -> bytes:
    """Every key's content but the encrypted hashes of stored secrets."""
    out = []
    async for key in redis.scan_iter(count=1000):
        if key.decode().startswith(keys.signing_secrets(0, "")):
            continue
        kind = (await redis.type(key)).decode()
        if kind == "stream":
            out.append(repr(await redis.xrange(key)))
        elif kind == "hash":
            out.append(repr(await redis.hgetall(key)))
        elif kind == "list":
            out.append(repr(await redis.lrange(key, 0, -1)))
        elif kind == "zset":
            out.append(repr(await redis.zrange(key, 0, -1, withscores=True)))
        elif kind == "set":
            out.append(repr(await redis.smembers(key)))
        else:
            out.append(repr(await redis.get(key)))
    return "\n".join(out).encode()


def archived(directory: Path) -> bytes:
    found = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            raw = path.read_bytes()
            found.append(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    assert found, "the archive wrote nothing"
    return b"\n".join(found)


def traced(spans: InMemorySpanExporter) -> bytes:
    finished = spans.get_finished_spans()
    assert any(s.name == "run.attempt" for s in finished)
    return "\n".join(s.to_json() for s in finished).encode()


async def test_no_secret_is_anywhere_but_in_the_answer_that_made_it(
    live: TestClient,
    target: Target,
    redis: Redis,
    keys: Keyspace,
    spans: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    with caplog.at_level(logging.DEBUG):
        secrets = await scenario(live, target.url)
        places = {"served": b"\n".join(await served(live))}
        report = await archive(redis, keys, int(time.time() * 1000) + 60_000, tmp_path)
        assert report.entries > 0
    assert target.calls["ok"] and target.calls["gone"]  # deliveries were signed and sent
    places |= {
        "redis": await redis_contents(redis, keys),
        "archive": archived(tmp_path),
        "traces": traced(spans),
        "logs": "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records).encode(),
    }
    assert len(caplog.records) > 10  # DEBUG was on, and logged
    for secret in secrets:
        for form in forms(secret):
            leaks = [where for where, text in places.items() if form in text]
            assert not leaks, f"{secret[:10]}... is in {leaks}"
