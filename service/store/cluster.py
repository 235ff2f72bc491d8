"""Redis Cluster: ``redis+cluster://`` URLs and the client they select.

``REDIS_URL=redis+cluster://[user:password@]host:port[,host:port…][?option=value]``
(``rediss+cluster://`` for TLS) names startup nodes; the client learns the rest of the
cluster from them and sends each command to the node holding its keys' slot. Every
key of partition ``p`` carries the hash tag ``{p}`` (store/keys.py), so each script
and each transaction runs on one node.

The cluster client is handed to the rest of the service as a ``Redis``: it answers
the same commands, and the few calls that differ (a probe on one connection, reads
of several partitions' streams) ask ``is_cluster`` and take the cluster's way. A
cluster that is down (CLUSTERDOWN, uncovered slots), or a connection a node closed
under the client, is reported as a lost connection, which the service rides out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Generator, Iterable
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, ClusterPubSub, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    NoScriptError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
OUTAGES = (ClusterDownError, ClusterError, SlotNotCoveredError, TryAgainError)
"""What a cluster answers while a node is down or slots move (after the client's own
retries): an outage, as a refused connection is, not a bug."""
DEFAULT_PORT = 6379
T = TypeVar("T")


class ClusterUrlInvalid(ValueError):
    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"REDIS_URL {_redacted(url)}: {why}")


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SCHEMES


def is_cluster(redis: Redis) -> bool:
    """Whether this client (typed ``Redis`` everywhere) talks to a Redis Cluster."""
    return isinstance(redis, RedisCluster)


def startup_nodes(url: str) -> list[tuple[str, int]]:
    """The ``host:port`` list of a ``redis+cluster://`` URL, in order."""
    hosts = urlsplit(url).netloc.rpartition("@")[2]
    nodes = []
    for address in hosts.split(","):
        host, colon, port = address.strip().rpartition(":")
        if not colon:
            host, port = port, str(DEFAULT_PORT)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ClusterUrlInvalid(url, f"{address!r} is not host:port")
        nodes.append((unquote(host.strip("[]")), int(port)))
    return nodes


def _connection_options(url: str) -> dict[str, Any]:
    """What redis-py reads from a one-node URL (credentials, TLS, query options)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    first = hosts.split(",", 1)[0]
    scheme = SCHEMES[parts.scheme.lower()]
    plain = urlunsplit((scheme, f"{userinfo}{at}{first}", parts.path, parts.query, ""))
    options: dict[str, Any] = dict(parse_url(plain))
    for name in ("host", "port"):
        options.pop(name, None)
    if options.pop("db", 0):
        raise ClusterUrlInvalid(url, "a cluster has only database 0")
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return options


TRANSPORT_FILES = (
    "redis/asyncio/connection.py",
    "asyncio/selector_events.py",
    "asyncio/streams.py",
)


def lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` is a connection the peer closed, surfacing from the transport as
    its own TypeError or AttributeError instead of a ConnectionError: redis-py lets a
    write on such a connection fail that way, which a node going down sets off in every
    task using it."""
    if not isinstance(exc, TypeError | AttributeError):
        return False
    tb, innermost = exc.__traceback__, ""
    while tb is not None:
        innermost, tb = tb.tb_frame.f_code.co_filename, tb.tb_next
    return innermost.endswith(TRANSPORT_FILES)


def as_outage(exc: BaseException) -> BaseException:
    """A cluster outage or a lost connection as redis-py's ConnectionError, which every
    loop of the service rides out (retry, back off) and the store turns into
    ``StoreUnavailable`` (503); anything else as it is."""
    if isinstance(exc, OUTAGES) or lost_connection(exc):
        return RedisConnectionError(f"redis cluster: {exc}")
    return exc


async def _guarded(call: Awaitable[T]) -> T:
    """``call``'s result; an outage raised as a lost connection (``as_outage``)."""
    try:
        return await call
    except Exception as exc:
        mapped = as_outage(exc)
        if mapped is exc:
            raise
        raise mapped from exc


class ScriptingCluster(RedisCluster):
    """A cluster client as the service needs it: pipelines that may call scripts, a
    SCAN that walks every primary, and outages that look like lost connections.

    redis-py refuses EVALSHA in a cluster pipeline because it cannot load a missing
    script there. The store pipelines its scripts (a batch of fires, of appends, of
    token checks), each call on keys of one partition: this client remembers every
    script registered on it and loads the ones a pipeline calls on every primary
    before the pipeline runs, once per client.
    """

    __slots__ = ("_loaded", "_scripts")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._scripts: dict[str, AsyncScript] = {}
        self._loaded: set[str] = set()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """The command; an outage raised as a lost connection (``as_outage``)."""
        return await _guarded(super().execute_command(*args, **kwargs))

    def pubsub(self, **options: Any) -> ClusterPubSub:  # type: ignore[override]
        return GuardedPubSub(self, **options)

    def register_script(self, script: str | bytes) -> AsyncScript:  # type: ignore[override]
        registered: AsyncScript = super().register_script(script)
        self._scripts[registered.sha] = registered
        return registered

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # which refuses it
        return ScriptPipeline(self, transaction)  # type: ignore[abstract]

    async def load_scripts(self, shas: Iterable[str]) -> None:
        """Load (SCRIPT LOAD on every primary) the known scripts not loaded yet."""
        for sha in set(shas) - self._loaded:
            script = self._scripts.get(sha)
            if script is not None:
                await self.script_load(script.script)
                self._loaded.add(sha)

    def forget_scripts(self) -> None:
        """A node answered NOSCRIPT (restarted, flushed, failed over): load again."""
        self._loaded.clear()

    async def scan(  # type: ignore[override]
        self,
        cursor: int = 0,
        match: str | None = None,
        count: int | None = None,
        _type: str | None = None,
        **options: Any,
    ) -> tuple[int, list[Any]]:
        """SCAN as one server answers it, over every primary in turn: the cursor holds
        the node's index and that node's cursor, and is 0 after the last node's end
        (so callers that loop on ``scan`` cover the whole cluster)."""
        if options.get("target_nodes") is not None:
            return await super().scan(cursor, match, count, _type, **options)
        nodes = sorted(self.get_primaries(), key=lambda node: node.name)
        at, node_cursor = int(cursor) % len(nodes), int(cursor) // len(nodes)
        reply: Any = await super().scan(
            node_cursor, match, count, _type, target_nodes=nodes[at], **options
        )
        found, keys = reply
        following = int(found[nodes[at].name])
        if following:
            return following * len(nodes) + at, keys
        return (at + 1 if at + 1 < len(nodes) else 0), keys

    async def scan_iter(  # type: ignore[override]
        self,
        match: str | None = None,
        count: int | None = None,
        _type: str | None = None,
        **options: Any,
    ) -> AsyncIterator[Any]:
        cursor = 0
        while True:
            cursor, keys = await self.scan(cursor, match, count, _type, **options)
            for key in keys:
                yield key
            if cursor == 0:
                return


class Queued:
    def __init__(self, pipeline: ClusterPipeline) -> None:
        self.pipeline = pipeline

    def __await__(self) -> Generator[Any, None, ClusterPipeline]:
        return self._queued().__await__()

    async def _queued(self) -> ClusterPipeline:
        return self.pipeline


class ScriptPipeline(ClusterPipeline):
    """A cluster pipeline that may call scripts: they are loaded on every primary first,
    and a call a node refused for want of its script (the node restarted or failed
    over since) is sent again once the script is loaded there."""

    __slots__ = ("_calls",)

    def __init__(self, client: ScriptingCluster, transaction: Any | None = None) -> None:
        super().__init__(client, transaction)
        self._calls: list[tuple[int, tuple[Any, ...]]] = []

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Queued:
        """Queue the call; awaiting what this returns (as a script object does) leaves the
        pipeline as it is, where awaiting the pipeline itself would empty it."""
        self._calls.append((len(self), (sha, numkeys, *keys_and_args)))
        self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)
        return Queued(self)

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        client = cast(ScriptingCluster, self.cluster_client)
        calls, self._calls = self._calls, []
        await client.load_scripts(args[0] for _, args in calls)
        replies: list[Any] = await _guarded(super().execute(False, allow_redirections))
        refused = [(at, args) for at, args in calls if isinstance(replies[at], NoScriptError)]
        if refused:
            client.forget_scripts()
            await client.load_scripts(args[0] for _, args in refused)
            for at, args in refused:
                replies[at] = await _reply_or_error(client.evalsha(*args))
        errors = [reply for reply in replies if isinstance(reply, Exception)]
        if raise_on_error and errors:
            raise errors[0]
        return replies


class GuardedPubSub(ClusterPubSub):
    """Pub/sub whose outages are lost connections too (the ticker's wake-ups)."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return await _guarded(super().execute_command(*args, **kwargs))

    async def get_message(self, *args: Any, **kwargs: Any) -> Any:
        return await _guarded(super().get_message(*args, **kwargs))


async def _reply_or_error(call: Any) -> Any:
    try:
        return await call
    except ResponseError as exc:
        return exc


def cluster_client(url: str, **options: Any) -> Redis:
    """A cluster client on the URL's startup nodes; ``options`` as for ``Redis``."""
    if not is_cluster_url(url):
        raise ClusterUrlInvalid(url, "not a redis+cluster:// URL")
    nodes = [ClusterNode(host, port) for host, port in startup_nodes(url)]
    client = ScriptingCluster(startup_nodes=nodes, **{**options, **_connection_options(url)})
    return cast(Redis, client)


NODE_OPTIONS = (
    "host",
    "port",
    "username",
    "password",
    "credential_provider",
    "socket_timeout",
    "socket_connect_timeout",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
)


def node_client(redis: Redis) -> Redis:
    """A plain client to one node of a cluster, for a probe that needs a client of its
    own (its own reply parsers); the caller closes it."""
    node = cast(RedisCluster, redis).get_random_node()
    options = {k: v for k, v in node.connection_kwargs.items() if k in NODE_OPTIONS}
    if issubclass(node.connection_class, SSLConnection):
        options["ssl"] = True
    return Redis(**options)


async def xread_streams(
    redis: Redis, streams: dict[Any, Any], *, count: int, block_ms: int
) -> list[Any]:
    """XREAD of several streams: one command, or on a cluster (where one command may
    only name keys of one slot, and partitions' logs have slots of their own) one per
    stream, all at once; a blocked read ends when the first stream has entries, the
    others are cancelled (nothing is lost: XREAD moves no cursor)."""
    if not is_cluster(redis) or len(streams) < 2:
        reply: Any = await redis.xread(streams, count=count, block=block_ms)
        return list(reply or [])
    reads = [redis.xread({name: at}, count=count) for name, at in streams.items()]
    found = [entry for reply in await asyncio.gather(*reads) for entry in reply or []]
    if found or not block_ms:
        return found
    return await _first_to_answer(redis, streams, count, block_ms)


async def _first_to_answer(
    redis: Redis, streams: dict[Any, Any], count: int, block_ms: int
) -> list[Any]:
    tasks = [
        asyncio.ensure_future(redis.xread({name: at}, count=count, block=block_ms))
        for name, at in streams.items()
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [entry for task in done for entry in task.result() or []]
