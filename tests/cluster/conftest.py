"""A local 3-node Redis Cluster, one per test module (forming one takes ~2 s: a new
node waits that long before it calls its slots writable)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis as sync_redis
from redis.cluster import RedisCluster

from migrations.keyspace import check_keyspace
from service.commands import SCHEDULES, WORKFLOWS, CommandService, ProjectionWaiter, RequestContext
from service.connection import connect
from service.domain import schedule as sched
from service.domain import workflow as wf
from service.domain.spec import Spec
from service.domain.timeutil import parse_instant
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
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


def create_schedules(url: str, keys: Keyspace, count: int) -> list[str]:
    """Workflow ``w`` (target none) and ``count`` schedules firing every second, catching
    up on every missed second, on a fresh keyspace (stamped, as serve would)."""

    async def create() -> list[str]:
        client = connect(url, 5.0)
        try:
            await check_keyspace(client, keys)
            commands = CommandService(
                EventStore(client, keys), ProjectionWaiter(client, keys), wait_timeout_s=0
            )
            workflow = wf.WorkflowConfig.model_validate({"target": {"type": "none"}})
            await commands.execute(WORKFLOWS, "w", wf.PutWorkflow("w", workflow), RequestContext())
            config = sched.ScheduleConfig.model_validate(
                {
                    "workflow_id": "w",
                    "spec": Spec(cron=["* * * * * *"]).model_dump(mode="json"),
                    "policy": {"catchup": "all", "overlap": "allow_all"},
                }
            )
            sids = [f"s{i:03d}" for i in range(count)]
            for sid in sids:
                await commands.execute(
                    SCHEDULES, sid, sched.CreateSchedule(sid, config), RequestContext()
                )
            return sids
        finally:
            await client.aclose()

    return asyncio.run(create())


def fires(client: RedisCluster, keys: Keyspace) -> dict[str, list[tuple[int, int]]]:
    """(nominal ms, epoch) of every fire, per schedule, from every partition's log; every
    fire of a schedule that catches up on everything is a ScheduleFired."""
    out: dict[str, list[tuple[int, int]]] = {}
    for p in range(keys.partitions):
        for _eid, fields in client.xrange(keys.log(p)):
            if fields[b"type"] in (b"ScheduleFired", b"FiresMissed", b"FireSkipped"):
                assert fields[b"type"] == b"ScheduleFired", fields
                data = orjson.loads(fields[b"data"])
                nominal = parse_instant(str(data["nominal_time"]))
                out.setdefault(fields[b"sid"].decode(), []).append((nominal, int(data["epoch"])))
    return out


def assert_exactly_once(client: RedisCluster, keys: Keyspace, sids: list[str]) -> None:
    """Every nominal second up to each schedule's high-water mark fired once."""
    records = fires(client, keys)
    for sid in sids:
        nominals = [n for n, _ in records.get(sid, [])]
        assert len(nominals) == len(set(nominals)), f"{sid} fired a nominal time twice"
        hwm = int(client.hget(keys.hwm(keys.partition_of(sid)), sid) or 0)
        assert sorted(nominals) == list(range(min(nominals), hwm + 1, 1000)), f"{sid} lost one"
