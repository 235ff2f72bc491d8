"""``cronstream serve`` refuses a keyspace older than it knows until it is migrated."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from migrations.keyspace import migrate
from service.store.embedded import start_redis_server
from service.store.keys import Keyspace
from tests.process import Service

pytestmark = pytest.mark.slow


async def _migrate(url: str) -> None:
    client = Redis.from_url(url)
    try:
        await migrate(client, Keyspace())
    finally:
        await client.aclose()


def test_serve_refuses_an_older_keyspace_until_migrated(tmp_path: Path) -> None:
    server = start_redis_server(tmp_path / "redis", appendonly=False)
    try:
        client = sync_redis.Redis.from_url(server.url)
        client.hset("cs:meta", "version", 1)
        client.hset("cs:{0}:state:schedule:old", mapping={"version": 1, "state": "{}"})
        service = Service(tmp_path / "data", redis_url=server.url)
        code = service.process.wait(30)
        service.stop()
        assert code != 0
        assert "keyspace is at version 1, this build needs version 2" in service.output()
        assert "cronstream migrate" in service.output()

        asyncio.run(_migrate(server.url))
        assert client.hget("cs:meta", "version") == b"2"
        assert client.hget("cs:{0}:state:schedule:old", "status") == b"active"
        service = Service(tmp_path / "data2", redis_url=server.url).wait_healthy()
        assert service.stop() == 0
        client.close()
    finally:
        server.stop()
