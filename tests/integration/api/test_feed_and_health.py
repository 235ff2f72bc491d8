"""The event feed, health endpoints and the OpenAPI document."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from projections.projector import Projector
from service.api.app import create_app
from service.api.models import FeedPage
from service.clock import FixedClock
from service.config import Settings
from service.store.keys import Keyspace
from tests.integration.api.helpers import create_schedule, problem, put_workflow


async def test_feed_pages_through_every_event_once(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    await api.post("/v1/schedules/nightly/pause", json={"note": "n"})
    r = await api.get("/v1/events", params={"limit": "2"})
    page = await r.json()
    FeedPage.model_validate(page)
    assert [e["type"] for e in page["items"]] == ["WorkflowCreated", "ScheduleCreated"]
    first = page["items"][0]
    assert set(first) == {"position", "partition", "type", "v", "sid", "data", "meta", "at"}
    assert first["at"].endswith("Z") and first["v"] == 1 and first["sid"] == "scan"
    assert first["meta"]["actor"].startswith("anonymous@")
    r = await api.get("/v1/events", params={"after": page["next"]})
    rest = await r.json()
    assert [e["type"] for e in rest["items"]] == ["SchedulePaused"]
    # resuming after any item's position continues right after it
    r = await api.get("/v1/events", params={"after": page["items"][0]["position"]})
    assert [e["type"] for e in (await r.json())["items"]] == ["ScheduleCreated", "SchedulePaused"]
    r = await api.get("/v1/events", params={"after": rest["next"]})
    assert (await r.json())["items"] == []


async def test_feed_rejects_a_malformed_cursor(api: TestClient) -> None:
    err = await problem(await api.get("/v1/events", params={"after": "yesterday"}), 422)
    assert err["errors"][0]["field"] == "after"
    err = await problem(await api.get("/v1/events", params={"limit": "5000"}), 422)
    assert err["errors"][0]["field"] == "limit"


async def test_health_and_readiness(api: TestClient, redis: Redis) -> None:
    assert (await api.get("/healthz")).status == 200
    r = await api.get("/readyz")
    body = await r.json()
    assert r.status == 200, body
    assert body["checks"]["redis"] == "ok"


async def test_readiness_fails_when_the_views_lag(
    redis: Redis, settings: Settings, keys: Keyspace, clock: FixedClock
) -> None:
    app = create_app(settings, redis, clock=clock, projector=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await redis.xadd(
            keys.log(0),
            {"type": "Unknown", "v": 1, "sid": "x", "data": "{}", "meta": "{}"},
            id="1000-0",
        )
        r = await client.get("/readyz")
        body = await r.json()
        assert r.status == 503, body
        assert body["status"] == "lagging"
        assert body["checks"]["projection.views.0"]["lag_events"] == 1
        # a projector catches up and the service is ready again
        await Projector(redis, keys).catch_up(0)
        assert (await client.get("/readyz")).status == 200


async def test_openapi_describes_every_route(api: TestClient) -> None:
    r = await api.get("/openapi.json")
    doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    assert {"post", "get"} <= set(doc["paths"]["/v1/schedules"])
    assert {"get", "patch", "delete"} <= set(doc["paths"]["/v1/schedules/{id}"])
    assert "ScheduleCreate" in doc["components"]["schemas"]
    create = doc["components"]["schemas"]["ScheduleCreate"]
    assert "workflow_id" in create["required"]
    docs = await api.get("/docs")
    assert docs.status == 200 and 'href="/openapi.json"' in await docs.text()
