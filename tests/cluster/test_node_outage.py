"""A Redis Cluster node killed (kill -9) under a running ``cronstream serve`` and started
again on its files: the cluster is down meanwhile (CLUSTERDOWN, no replicas); serve
rides it out as an outage, and fires resume in every partition with none fired twice
and none lost."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis as sync_redis
from redis.cluster import RedisCluster

from service.store.keys import Keyspace
from service.store.local_cluster import LocalCluster, start_local_cluster
from tests.every_second import assert_exactly_once, create_schedules, fires
from tests.process import Service, wait_until

pytestmark = pytest.mark.slow

PARTITIONS = 6
KEYS = Keyspace("cs", PARTITIONS)
NODE_TIMEOUT_MS = 1000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """AOF on, so a killed node comes back with its data; a short node timeout, so the
    others count it failed (and the cluster down) within a second."""
    started = start_local_cluster(
        tmp_path_factory.mktemp("cluster"), 3, appendonly=True, node_timeout_ms=NODE_TIMEOUT_MS
    )
    yield started
    started.stop()


def cluster_state(url: str) -> str:
    client = sync_redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return str(client.cluster("INFO").get("cluster_state"))
    except (sync_redis.RedisError, OSError):
        return "unreachable"
    finally:
        client.close()


def newest_fire_ms(client: RedisCluster) -> list[int]:
    """The stream time of each partition's newest ScheduleFired (0: none)."""
    out = []
    for p in range(PARTITIONS):
        entries = client.xrevrange(KEYS.log(p), count=100)
        stamps = [int(e.split(b"-")[0]) for e, f in entries if f[b"type"] == b"ScheduleFired"]
        out.append(max(stamps, default=0))
    return out


def test_serve_rides_out_a_node_down_and_fires_resume_everywhere(
    cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sids = create_schedules(cluster.url, KEYS, 24)
    host, port = cluster.addresses[0].rsplit(":", 1)
    service = Service(
        tmp_path_factory.mktemp("serve") / "data",
        redis_url=cluster.url,
        CRONSTREAM_PARTITIONS=str(PARTITIONS),
        CRONSTREAM_LEASE_TTL_MS="2000",
    )
    try:
        service.wait_healthy(30)
        with RedisCluster(host=host, port=int(port), socket_timeout=5) as client:
            wait_until(lambda: min(newest_fire_ms(client)) > 0, 15, "fires in every partition")
        cluster.kill(2)
        others = [node.url for node in cluster.nodes[:2]]
        wait_until(lambda: all(cluster_state(url) == "fail" for url in others), 15, "CLUSTERDOWN")
        wait_until(lambda: "redis unavailable" in service.output(), 15, "serve to meet the outage")
        assert service.process.poll() is None, service.output()
        cluster.restart(2)
        back = time.time() * 1000
        wait_until(lambda: cluster_state(cluster.nodes[2].url) == "ok", 20, "the node back")
        with RedisCluster(host=host, port=int(port), socket_timeout=5) as client:
            wait_until(
                lambda: min(newest_fire_ms(client)) > back, 20, "fires in every partition again"
            )
    finally:
        code = service.stop()
    assert code == 0, service.output()
    with RedisCluster(host=host, port=int(port), socket_timeout=5) as client:
        assert_exactly_once(client, KEYS, sids)
        assert len(fires(client, KEYS)) == len(sids)
