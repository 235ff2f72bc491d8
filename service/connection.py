"""The service's Redis client: REDIS_URL (a server or a Redis Cluster), else the embedded
Redis under the data dir. Kept apart from service/server.py so commands that only need
Redis (``apply``, ``token``, ...) start without loading the API and the loops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.config import Settings
from service.errors import StoreUnavailable
from service.store.cluster import cluster_client, is_cluster_url
from service.store.embedded import RedisProcess, embedded_redis, release_embedded
from service.store.features import ServerFeatures, server_features


@dataclass
class RedisConnection:
    client: Redis
    url: str
    embedded: RedisProcess | None
    features: ServerFeatures


def connect(url: str, timeout_s: float) -> Redis:
    """A client that retries a command on a dropped connection or a timeout.

    Retrying is safe because every script that appends deduplicates itself; it
    lets the service ride out stale pooled connections after a Redis restart.
    A ``redis+cluster://`` URL gives a Redis Cluster client (store/cluster.py).
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": min(timeout_s, 2.0),
        "health_check_interval": 30,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.02), retries=3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if is_cluster_url(url):
        return cluster_client(url, **options)
    return Redis.from_url(url, **options)


@contextlib.asynccontextmanager
async def redis_for(settings: Settings, *, adopt: bool = False) -> AsyncIterator[RedisConnection]:
    """Redis at REDIS_URL, else the embedded one under the data dir (started if needed).

    A server older than 6.2 is refused here (``RedisVersionUnsupported``), before
    any command of the caller reads or writes.
    """
    embedded = None
    url = settings.redis_url
    if url is None:
        embedded = await asyncio.to_thread(embedded_redis, settings.data_dir, adopt=adopt)
        url = embedded.url
    client = connect(url, settings.redis_timeout_s)
    try:
        features = await _features(client, url)
        yield RedisConnection(client, url, embedded, features)
    finally:
        await client.aclose()
        if embedded is not None:
            await asyncio.to_thread(release_embedded, settings.data_dir, embedded)


TLS_HINT = "rediss:// asks for TLS: is that port a TLS port (tls-port) of a Redis built with TLS?"


async def _features(client: Redis, url: str) -> ServerFeatures:
    """The server's features; a rediss:// URL whose port speaks no TLS fails in the
    handshake, which the client reports as a timeout or a reset: the error says why."""
    try:
        return await server_features(client)
    except StoreUnavailable as exc:
        if not url.lower().startswith("rediss://"):
            raise
        raise StoreUnavailable(exc.where, f"{exc.__cause__ or exc}; {TLS_HINT}") from exc
