"""``redis+cluster://`` URLs: startup nodes, credentials, TLS, what a cluster refuses."""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import RedisCluster

from service.store.cluster import (
    ClusterUrlInvalid,
    cluster_client,
    is_cluster_url,
    startup_nodes,
)


def test_the_scheme_selects_cluster_mode() -> None:
    assert is_cluster_url("redis+cluster://127.0.0.1:7000")
    assert is_cluster_url("REDISS+CLUSTER://127.0.0.1:7000")
    assert not is_cluster_url("redis://127.0.0.1:6379/0")
    assert not is_cluster_url("rediss://127.0.0.1:6379")


def test_every_listed_node_is_a_startup_node() -> None:
    url = "redis+cluster://user:p%40ss@127.0.0.1:7000,127.0.0.1:7001, 127.0.0.1"
    assert startup_nodes(url) == [("127.0.0.1", 7000), ("127.0.0.1", 7001), ("127.0.0.1", 6379)]


@pytest.mark.parametrize(
    "url", ["redis+cluster://127.0.0.1:x", "redis+cluster://:7000", "redis+cluster://h:70000"]
)
def test_a_node_that_is_not_host_port_is_refused(url: str) -> None:
    with pytest.raises(ClusterUrlInvalid, match="is not host:port"):
        startup_nodes(url)


async def test_the_client_takes_credentials_and_options_from_the_url() -> None:
    client = cluster_client(
        "rediss+cluster://app:s3cret@127.0.0.1:7000,127.0.0.1:7001?ssl_cert_reqs=none",
        socket_timeout=3.0,
    )
    assert isinstance(client, RedisCluster)
    options = client.get_connection_kwargs()
    assert (options["username"], options["password"]) == ("app", "s3cret")
    assert options["socket_timeout"] == 3.0
    assert list(client.nodes_manager.startup_nodes) == ["127.0.0.1:7000", "127.0.0.1:7001"]
    await client.aclose()


def test_a_database_other_than_0_is_refused_and_the_password_is_not_shown() -> None:
    with pytest.raises(ClusterUrlInvalid) as caught:
        cluster_client("redis+cluster://app:s3cret@127.0.0.1:7000/2")
    assert "only database 0" in str(caught.value)
    assert "s3cret" not in str(caught.value)
