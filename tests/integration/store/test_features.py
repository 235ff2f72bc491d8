"""The version check and feature probe against a real redis-server."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from redis.asyncio import Redis

from service.store.embedded import find_redis_server, start_redis_server
from service.store.features import parse_version, server_features


def binary_version() -> tuple[int, int, int]:
    """The version the binary under test states of itself, without a server."""
    out = subprocess.run(
        [find_redis_server(), "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    found = re.search(r"v=(\S+)", out)
    assert found is not None, out
    version = parse_version(found.group(1))
    assert version is not None, out
    return version


async def test_the_test_server_is_supported_and_probed(redis: Redis) -> None:
    version = binary_version()
    features = await server_features(redis)
    assert features.version == version
    # what each release added, as the release notes state it
    assert features.multipart_aof == (version >= (7, 0, 0))
    assert features.functions == (version >= (7, 0, 0))
    assert features.waitaof == (version >= (7, 2, 0))
    # the probe gave its connection back and the client goes on as before
    assert await redis.ping()


async def test_a_command_renamed_away_is_not_counted(tmp_path: Path) -> None:
    # rename-command refuses names the server does not know: rename those it has
    version = binary_version()
    added = {"FUNCTION": (7, 0, 0), "WAITAOF": (7, 2, 0)}
    renames = [
        arg
        for name, since in added.items()
        if version >= since
        for arg in ("--rename-command", name, "")
    ]
    server = start_redis_server(tmp_path / "redis", appendonly=False, extra_args=renames)
    client = Redis.from_url(server.url)
    try:
        features = await server_features(client)
    finally:
        await client.aclose()
        server.stop()
    assert features.version == version
    assert features.multipart_aof == (version >= (7, 0, 0))
    assert not features.functions and not features.waitaof
