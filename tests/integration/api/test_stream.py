"""GET /v1/events/stream: SSE that resumes exactly, filters, and stops cleanly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api import stream
from service.api.app import create_app
from service.clock import FixedClock
from service.config import Settings
from service.store.keys import Keyspace
from tests.integration.api.helpers import create_schedule, put_workflow

DEADLINE_S = 10.0


class Message(dict[str, Any]):
    pass


async def next_message(resp: ClientResponse, timeout_s: float = DEADLINE_S) -> Message:
    """The next SSE message (id/event/data fields), skipping comment-only blocks."""
    deadline = time.monotonic() + timeout_s
    fields = Message()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no SSE message before the deadline")
        line = (await asyncio.wait_for(resp.content.readline(), timeout=left)).decode()
        if line == "":
            raise AssertionError("stream ended")
        line = line.rstrip("\n")
        if line == "":
            if fields:
                return fields
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        fields[name] = value


async def collect(resp: ClientResponse, count: int) -> list[Message]:
    out: list[Message] = []
    for _ in range(count):
        out.append(await next_message(resp))
    return out


async def open_stream(api: TestClient, **kwargs: Any) -> ClientResponse:
    resp = await api.get("/v1/events/stream", **kwargs)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    return resp


async def feed(api: TestClient) -> list[dict[str, Any]]:
    r = await api.get("/v1/events", params={"limit": "1000"})
    items: list[dict[str, Any]] = (await r.json())["items"]
    return items


async def test_messages_carry_feed_positions_and_items(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    resp = await open_stream(api)
    try:
        messages = await collect(resp, 2)
    finally:
        resp.close()
    items = await feed(api)
    assert [m["id"] for m in messages] == [i["position"] for i in items]
    assert [m["event"] for m in messages] == [i["type"] for i in items]
    assert [orjson.loads(m["data"]) for m in messages] == items


async def test_resume_after_disconnect_misses_nothing_and_repeats_nothing(
    api: TestClient,
) -> None:
    await put_workflow(api)
    await create_schedule(api)
    resp = await open_stream(api)
    first = await collect(resp, 2)
    # live: events appended while connected arrive without polling
    await api.post("/v1/schedules/nightly/pause", json={"note": "a"})
    first += await collect(resp, 1)
    resp.close()  # the client goes away mid-stream
    # appended while nobody listens
    await api.post("/v1/schedules/nightly/resume", json={"note": "b"})
    await api.patch("/v1/schedules/nightly", json={"name": "renamed"})
    await create_schedule(api, "second")
    resp = await open_stream(api, headers={"Last-Event-ID": first[-1]["id"]})
    try:
        second = await collect(resp, 3)
        await api.delete("/v1/schedules/second")
        second += await collect(resp, 1)
    finally:
        resp.close()
    items = await feed(api)
    seen = first + second
    assert [m["id"] for m in seen] == [i["position"] for i in items]
    assert len({m["id"] for m in seen}) == len(seen) == 7


async def test_after_query_resumes_and_the_header_wins(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    await api.post("/v1/schedules/nightly/pause")
    items = await feed(api)
    resp = await open_stream(api, params={"after": items[0]["position"]})
    try:
        assert [m["id"] for m in await collect(resp, 2)] == [i["position"] for i in items[1:]]
    finally:
        resp.close()
    resp = await open_stream(
        api,
        params={"after": items[0]["position"]},
        headers={"Last-Event-ID": items[1]["position"]},
    )
    try:
        assert (await next_message(resp))["id"] == items[2]["position"]
    finally:
        resp.close()


async def test_filters_by_type_and_schedule_and_still_advance_the_cursor(
    api: TestClient,
) -> None:
    await put_workflow(api)
    await create_schedule(api, "a")
    await create_schedule(api, "b")
    await api.post("/v1/schedules/a/pause")
    await api.post("/v1/schedules/b/pause")
    resp = await open_stream(api, params={"type": "SchedulePaused,ScheduleDeleted"})
    try:
        paused = await collect(resp, 2)
        assert [orjson.loads(m["data"])["sid"] for m in paused] == ["a", "b"]
        assert {m["event"] for m in paused} == {"SchedulePaused"}
    finally:
        resp.close()
    resp = await open_stream(api, params={"schedule": "a"})
    try:
        only_a = await collect(resp, 2)
        assert [m["event"] for m in only_a] == ["ScheduleCreated", "SchedulePaused"]
        # b's pause comes after a's: an id-only message moves the cursor past it
        tail = await next_message(resp)
        assert set(tail) == {"id"}
        items = await feed(api)
        assert tail["id"] == items[-1]["position"]
    finally:
        resp.close()
    # resuming from that id sees only what comes next
    resp = await open_stream(api, headers={"Last-Event-ID": tail["id"]})
    try:
        await api.delete("/v1/schedules/a")
        (deleted,) = await collect(resp, 1)
        assert deleted["event"] == "ScheduleDeleted"
    finally:
        resp.close()


async def test_a_malformed_resume_position_is_a_problem(api: TestClient) -> None:
    r = await api.get("/v1/events/stream", headers={"Last-Event-ID": "nope"})
    assert r.status == 422
    assert (await r.json())["errors"][0]["field"] == "Last-Event-ID"


@pytest.fixture
async def app_with_shutdown(
    redis: Redis, settings: Settings, clock: FixedClock
) -> AsyncIterator[TestClient]:
    app = create_app(settings, redis, clock=clock)
    app.on_shutdown.append(stream.close_streams)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client
    await client.close()


async def wait_for_streams(client: TestClient, count: int) -> None:
    app = client.server.app
    assert app is not None
    deadline = time.monotonic() + DEADLINE_S
    while stream.open_streams(app) != count:
        assert time.monotonic() < deadline, f"{stream.open_streams(app)} streams open"
        await asyncio.sleep(0.02)


async def test_a_stream_ends_when_its_client_goes_away(app_with_shutdown: TestClient) -> None:
    client = app_with_shutdown
    resp = await open_stream(client)
    await wait_for_streams(client, 1)
    resp.close()
    await wait_for_streams(client, 0)


async def test_streams_end_when_the_app_shuts_down(app_with_shutdown: TestClient) -> None:
    client = app_with_shutdown
    resp = await open_stream(client)
    await wait_for_streams(client, 1)
    started = time.monotonic()
    await client.server.close()
    rest = await asyncio.wait_for(resp.content.read(), timeout=DEADLINE_S)
    assert b"event:" not in rest
    assert time.monotonic() - started < 5
    resp.close()


async def test_several_partitions_resume_with_a_cursor(
    redis: Redis, settings: Settings, clock: FixedClock
) -> None:
    settings = Settings(
        redis_url=settings.redis_url, data_dir=settings.data_dir, partitions=3, auth=False
    )
    app = create_app(settings, redis, clock=clock)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        await put_workflow(client)
        for sid in ("p-a", "p-b", "p-c", "p-d"):
            await create_schedule(client, sid)
        resp = await open_stream(client)
        first = await collect(resp, 3)
        resp.close()
        for sid in ("p-a", "p-b", "p-c", "p-d"):
            await client.post(f"/v1/schedules/{sid}/pause")
        resp = await open_stream(client, headers={"Last-Event-ID": first[-1]["id"]})
        rest = await collect(resp, 6)
        resp.close()
        keys = Keyspace(settings.key_prefix, 3)
        total = sum([int(await redis.xlen(keys.log(p))) for p in range(3)])
        seen = [(orjson.loads(m["data"])["sid"], m["event"]) for m in first + rest]
        assert len(seen) == len(set(seen)) == total == 9
        assert all(len(m["id"].split(".")) == 3 for m in first + rest)
    finally:
        await client.close()
