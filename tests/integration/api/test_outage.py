"""With Redis unreachable every route that needs it answers 503, never 500.

The store adapters raise ``StoreUnavailable`` from the Redis client's errors and
the problem middleware maps that error alone to 503: a route whose Redis calls
escape the translation would answer 500 here.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service.api.app import create_app
from service.api.routing import ROUTES
from service.config import Settings
from service.errors import StoreUnavailable
from service.store.eventstore import EventStore
from service.store.keys import Keyspace

SCHEDULE = {"id": "s", "workflow_id": "w", "spec": {"cron": ["0 * * * *"]}}
WINDOW = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T03:00:00Z"}
FIRES = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T03:00:00Z"}

# (method, route path) -> (path to call, JSON body or None, query, expected status)
SIGNING = "/v1/workflows/{id}/signing-secrets"
NOTIFY = "/v1/notifications"
CHANNEL = {"target": {"type": "slack", "url": "https://hooks.example.com/services/x"}}
RULE = {"on": "run_failed", "channels": ["c"]}
CALLS: dict[tuple[str, str], tuple[str, Any, dict[str, str], int]] = {
    ("GET", "/openapi.json"): ("/openapi.json", None, {}, 200),
    ("GET", "/docs"): ("/docs", None, {}, 200),
    ("GET", "/healthz"): ("/healthz", None, {}, 200),
    ("POST", "/v1/specs/preview"): (
        "/v1/specs/preview",
        {"spec": {"cron": ["0 * * * *"]}},
        {},
        200,
    ),
    ("POST", "/v1/specs/describe"): (
        "/v1/specs/describe",
        {"spec": {"cron": ["0 * * * *"]}, "at": ["2026-01-01T00:00:00Z"]},
        {},
        200,
    ),
    ("GET", "/v1/forecast"): ("/v1/forecast", None, {}, 503),
    ("GET", "/readyz"): ("/readyz", None, {}, 503),
    ("GET", "/metrics"): ("/metrics", None, {}, 503),
    ("GET", "/v1/events"): ("/v1/events", None, {}, 503),
    ("POST", "/v1/schedules"): ("/v1/schedules", SCHEDULE, {}, 503),
    ("GET", "/v1/schedules"): ("/v1/schedules", None, {}, 503),
    ("GET", "/v1/schedules/{id}"): ("/v1/schedules/s", None, {}, 503),
    ("PATCH", "/v1/schedules/{id}"): ("/v1/schedules/s", {"name": "n"}, {}, 503),
    ("POST", "/v1/schedules/{id}/pause"): ("/v1/schedules/s/pause", {}, {}, 503),
    ("POST", "/v1/schedules/{id}/resume"): ("/v1/schedules/s/resume", {}, {}, 503),
    ("DELETE", "/v1/schedules/{id}"): ("/v1/schedules/s", None, {}, 503),
    ("GET", "/v1/schedules/{id}/history"): ("/v1/schedules/s/history", None, {}, 503),
    ("GET", "/v1/schedules/{id}/next-runs"): ("/v1/schedules/s/next-runs", None, {}, 503),
    ("POST", "/v1/schedules/{id}/trigger"): ("/v1/schedules/s/trigger", {}, {}, 503),
    ("POST", "/v1/schedules/{id}/backfill"): ("/v1/schedules/s/backfill", WINDOW, {}, 503),
    ("GET", "/v1/schedules/{id}/fires"): ("/v1/schedules/s/fires", None, FIRES, 503),
    ("GET", "/v1/runs"): ("/v1/runs", None, {}, 503),
    ("GET", "/v1/schedules/{id}/runs"): ("/v1/schedules/s/runs", None, {}, 503),
    ("GET", "/v1/runs/{id}"): ("/v1/runs/r", None, {}, 503),
    ("POST", "/v1/runs/{id}/cancel"): ("/v1/runs/r/cancel", {}, {}, 503),
    ("POST", "/v1/runs/{id}/retry"): ("/v1/runs/r/retry", None, {}, 503),
    ("POST", "/v1/workflows/{id}/runs"): ("/v1/workflows/w/runs", {}, {}, 503),
    ("GET", "/v1/breakers"): ("/v1/breakers", None, {}, 503),
    ("PUT", "/v1/workflows/{id}"): ("/v1/workflows/w", {"target": {"type": "none"}}, {}, 503),
    ("GET", "/v1/workflows/{id}"): ("/v1/workflows/w", None, {}, 503),
    ("GET", "/v1/workflows"): ("/v1/workflows", None, {}, 503),
    ("DELETE", "/v1/workflows/{id}"): ("/v1/workflows/w", None, {}, 503),
    ("POST", SIGNING): ("/v1/workflows/w/signing-secrets", None, {}, 503),
    ("POST", SIGNING + "/rotate"): ("/v1/workflows/w/signing-secrets/rotate", {}, {}, 503),
    ("GET", SIGNING): ("/v1/workflows/w/signing-secrets", None, {}, 503),
    ("DELETE", SIGNING + "/{secret_id}"): (
        "/v1/workflows/w/signing-secrets/sec_0123456789abcdef",
        None,
        {},
        503,
    ),
    ("PUT", NOTIFY + "/channels/{id}"): (NOTIFY + "/channels/c", CHANNEL, {}, 503),
    ("GET", NOTIFY + "/channels/{id}"): (NOTIFY + "/channels/c", None, {}, 503),
    ("GET", NOTIFY + "/channels"): (NOTIFY + "/channels", None, {}, 503),
    ("DELETE", NOTIFY + "/channels/{id}"): (NOTIFY + "/channels/c", None, {}, 503),
    ("PUT", NOTIFY + "/rules/{id}"): (NOTIFY + "/rules/r", RULE, {}, 503),
    ("GET", NOTIFY + "/rules/{id}"): (NOTIFY + "/rules/r", None, {}, 503),
    ("GET", NOTIFY + "/rules"): (NOTIFY + "/rules", None, {}, 503),
    ("DELETE", NOTIFY + "/rules/{id}"): (NOTIFY + "/rules/r", None, {}, 503),
    ("GET", NOTIFY): (NOTIFY, None, {}, 503),
}
REQUEST_TIMEOUT_S = 5.0
# the event stream keeps its connection open and retries on its own
NOT_CALLED = {("GET", "/v1/events/stream")}


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def unreachable() -> AsyncIterator[Redis]:
    client = Redis(
        host="127.0.0.1", port=closed_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    yield client
    await client.aclose()


@pytest.fixture
async def outage_api(unreachable: Redis, tmp_path: Path) -> AsyncIterator[TestClient]:
    settings = Settings(
        redis_url="redis://127.0.0.1:1/0", data_dir=tmp_path, partitions=1, auth=False
    )
    app = create_app(settings, unreachable, projector=False)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def test_every_route_is_called() -> None:
    routes = {(r.method, r.path) for r in ROUTES}
    assert routes - NOT_CALLED == set(CALLS), "add the new route to CALLS"


async def test_each_route_answers_503_or_works_without_redis(outage_api: TestClient) -> None:
    wrong = {}
    for (method, _route), (path, body, query, expected) in CALLS.items():
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                r = await outage_api.request(method, path, json=body, params=query)
                text = await r.text()
        except TimeoutError:
            wrong[f"{method} {path}"] = (0, "no answer")
            continue
        if r.status != expected:
            wrong[f"{method} {path}"] = (r.status, text[:200])
        elif expected == 503 and path != "/readyz":
            assert r.content_type == "application/problem+json", (path, text)
            assert "Traceback" not in text and "127.0.0.1" not in text
    assert not wrong, wrong


async def test_the_store_raises_store_unavailable_from_the_redis_error(
    unreachable: Redis,
) -> None:
    store = EventStore(unreachable, Keyspace())
    with pytest.raises(StoreUnavailable, match=r"EventStore\.read") as caught:
        await store.read(0, "0-0", 10)
    assert type(caught.value.__cause__).__module__ == "redis.exceptions"
    assert isinstance(caught.value, OSError)  # loops that ride out outages still catch it
