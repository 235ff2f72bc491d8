"""A Redis Cluster of local redis-server processes, for tests and benchmarks.

Each node is the same binary the embedded mode runs (``find_redis_server``), started
with ``--cluster-enabled yes`` on a free port of 127.0.0.1. The slots are split in
equal ranges and assigned here with CLUSTER ADDSLOTS (in chunks: Redis 6.2 has no
ADDSLOTSRANGE), the nodes are introduced with CLUSTER MEET, and ``start_local_cluster``
returns once every node reports ``cluster_state:ok`` and knows every other node.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis as sync_redis

from service.store.embedded import RedisProcess, start_redis_server

SLOTS = 16384
ADDSLOTS_CHUNK = 1024
FORM_TIMEOUT_S = 20.0
# a node's cluster bus listens on its port + 10000 (Redis 6.2 cannot move it), so a
# node's port must leave room for that and both must be free
BUS_OFFSET = 10000
PORT_RANGE = (20000, 65535 - BUS_OFFSET)
PORT_TRIES = 200


@dataclass
class LocalCluster:
    nodes: list[RedisProcess]
    data_dir: Path
    appendonly: bool
    args: list[str]

    @property
    def addresses(self) -> list[str]:
        return [node.url.removeprefix("redis://").removesuffix("/0") for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a startup node."""
        return "redis+cluster://" + ",".join(self.addresses)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``: nothing is flushed on the way down."""
        process = self.nodes[i].process
        assert process is not None
        process.kill()
        process.wait(timeout=10)

    def restart(self, i: int) -> None:
        """Start node ``i`` again on its port and files (nodes.conf, AOF): it rejoins."""
        port = int(self.addresses[i].rsplit(":", 1)[1])
        self.nodes[i] = start_redis_server(
            self.data_dir / f"node{i}", port, appendonly=self.appendonly, extra_args=self.args
        )


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port of 127.0.0.1 whose cluster bus port (+10000) is free too."""
    for _ in range(PORT_TRIES):
        port = random.randint(*PORT_RANGE)
        if _bindable(port) and _bindable(port + BUS_OFFSET):
            return port
    raise RuntimeError(f"no free port pair (port, port + {BUS_OFFSET}) in {PORT_TRIES} tries")


def slot_ranges(nodes: int) -> list[tuple[int, int]]:
    """``nodes`` contiguous, near-equal ranges of the 16384 slots (inclusive ends)."""
    bounds = [SLOTS * i // nodes for i in range(nodes + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(nodes)]


def start_local_cluster(
    data_dir: Path,
    nodes: int = 3,
    *,
    appendonly: bool = False,
    node_timeout_ms: int = 15_000,
    extra_args: Sequence[str] = (),
) -> LocalCluster:
    """Start ``nodes`` primaries (no replicas), give each a slot range, wait until formed.

    ``node_timeout_ms`` is how long a node may not answer before the others count it
    failed (and, without replicas, the cluster down): Redis's default, since on a busy
    machine a node can miss shorter deadlines."""
    started: list[RedisProcess] = []
    args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    args += ["--cluster-node-timeout", str(node_timeout_ms), *extra_args]
    try:
        for i in range(nodes):
            started.append(
                start_redis_server(
                    data_dir / f"node{i}", cluster_port(), appendonly=appendonly, extra_args=args
                )
            )
        cluster = LocalCluster(started, data_dir, appendonly, args)
        _form(cluster)
        return cluster
    except BaseException:
        for node in started:
            node.stop()
        raise


def _form(cluster: LocalCluster) -> None:
    clients = [sync_redis.Redis.from_url(node.url, socket_timeout=5) for node in cluster.nodes]
    try:
        ranges = slot_ranges(len(clients))
        for epoch, (client, (first, last)) in enumerate(zip(clients, ranges, strict=True), 1):
            for start in range(first, last + 1, ADDSLOTS_CHUNK):
                chunk = range(start, min(start + ADDSLOTS_CHUNK, last + 1))
                client.cluster("ADDSLOTS", *chunk)
            # distinct epochs up front, as redis-cli does: no collision to resolve later
            client.cluster("SET-CONFIG-EPOCH", epoch)
        for client in clients:
            for address in cluster.addresses:
                host, port = address.rsplit(":", 1)
                client.cluster("MEET", host, int(port))
        _wait_formed(clients)
    finally:
        for client in clients:
            client.close()


def _wait_formed(clients: list[sync_redis.Redis]) -> None:
    deadline = time.monotonic() + FORM_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(_node_ready(client, len(clients)) for client in clients):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the local cluster did not reach cluster_state:ok in {FORM_TIMEOUT_S}s")


def _node_ready(client: sync_redis.Redis, nodes: int) -> bool:
    info = client.cluster("INFO")
    if isinstance(info, bytes | str):
        text = info.decode() if isinstance(info, bytes) else info
        info = dict(line.split(":", 1) for line in text.split() if ":" in line)
    return (
        str(info.get("cluster_state")) == "ok"
        and int(info.get("cluster_known_nodes", 0)) == nodes
        and int(info.get("cluster_slots_ok", 0)) == SLOTS
    )


@contextlib.contextmanager
def local_cluster(data_dir: Path, nodes: int = 3, **options: object) -> Iterator[LocalCluster]:
    cluster = start_local_cluster(data_dir, nodes, **options)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        cluster.stop()
