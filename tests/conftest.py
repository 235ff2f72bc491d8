"""Shared fixtures: one real redis-server per test session, flushed between tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api.app import create_app
from service.clock import FixedClock
from service.config import Settings
from service.domain.addresses import ALLOW_PRIVATE_VAR
from service.store.embedded import RedisProcess, start_redis_server
from service.store.keys import Keyspace

# 2026-01-15T12:00:00Z: a fixed "now" for tests that render next run times.
NOW_MS = 1_768_478_400_000


@pytest.fixture(scope="session", autouse=True)
def private_targets_allowed() -> Iterator[None]:
    """The suite's webhooks go to receivers on 127.0.0.1, which deliveries refuse by
    default: the suite opts in, as an operator would, for the workers and ``serve``
    processes it starts (they read the environment). Tests of the guard opt out."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ALLOW_PRIVATE_VAR, "1")
        yield


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = start_redis_server(tmp_path_factory.mktemp("redis"), appendonly=False)
    os.environ.setdefault("CRONSTREAM_TEST_REDIS_URL", server.url)
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, socket_timeout=10)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    # open (as under serve --insecure-dev): tests of tokens build their own settings
    return Settings(
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        partitions=1,
        auth=False,
        allow_private_targets=True,  # local receivers: see private_targets_allowed
    )


@pytest.fixture
def keys(settings: Settings) -> Keyspace:
    return Keyspace(settings.key_prefix, settings.partitions)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW_MS)


@pytest.fixture
async def api(redis: Redis, settings: Settings, clock: FixedClock) -> AsyncIterator[TestClient]:
    app = create_app(settings, redis, clock=clock)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client
    await client.close()


SERIAL_DIRS = ("fault", "cluster", "browser")
"""Tests that start processes (services, Redis nodes, a browser) and judge them by
time: under ``pytest -n N --dist loadgroup`` they all run on one worker, one after
another, while the other workers share the rest, so they never compete with each other
for the CPU (scripts/test runs the suite that way)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(root).parts
        if parts and parts[0] in SERIAL_DIRS:
            item.add_marker(pytest.mark.xdist_group("processes"))
