"""A local 3-node Redis Cluster, one per test module (forming one takes ~2 s: a new
node waits that long before it calls its slots writable)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from redis.cluster import RedisCluster

from service.store.local_cluster import LocalCluster, start_local_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    started = start_local_cluster(tmp_path_factory.mktemp("cluster"), nodes=3)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def cluster_client(cluster: LocalCluster) -> Iterator[RedisCluster]:
    """A synchronous cluster client for the tests' own reads."""
    host, port = cluster.addresses[0].rsplit(":", 1)
    client = RedisCluster(host=host, port=int(port), socket_timeout=10)
    yield client
    client.close()


def node_of(client: RedisCluster, key: str) -> str:
    node = client.get_node_from_key(key)
    assert node is not None
    return str(node.name)


def node_clients(cluster: LocalCluster) -> list[sync_redis.Redis]:
    return [sync_redis.Redis.from_url(node.url, socket_timeout=10) for node in cluster.nodes]


def flush(cluster: LocalCluster) -> None:
    for client in node_clients(cluster):
        client.flushall()
        client.close()


@pytest.fixture
def empty_cluster(cluster: LocalCluster, tmp_path: Path) -> LocalCluster:
    flush(cluster)
    return cluster


