"""Which Redis the service talks to, and what that server can do beyond the minimum.

cronstream needs Redis 6.2: workers reclaim idle queue entries with XAUTOCLAIM and
the archiver trims a log with XTRIM MINID, both new in 6.2. A server below that is
refused at start, before anything is read or written.

What newer servers add is detected on the server itself, never assumed from the
deployment: WAITAOF and FUNCTION by asking ``COMMAND INFO`` (a fork may report an
older version and still have them, a server may have them renamed away), the
multi-part AOF (a directory of files instead of one ``appendonly.aof``) from the
version, since no command names it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from service.errors import RedisVersionUnsupported
from service.store.boundary import translate_redis_errors
from service.store.cluster import is_cluster, node_client

log = logging.getLogger(__name__)

MINIMUM_VERSION = (6, 2, 0)
MINIMUM = "6.2"
MULTIPART_AOF_SINCE = (7, 0, 0)
PROBED_COMMANDS = ("waitaof", "function")

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class ServerFeatures:
    """What one Redis server offers on top of what cronstream requires."""

    version: tuple[int, int, int]
    multipart_aof: bool
    """7.0: the AOF is a manifest with base and incremental files in ``appendonlydir``."""
    functions: bool
    """7.0: FUNCTION LOAD / FCALL, libraries kept by the server (and in the AOF)."""
    waitaof: bool
    """7.2: WAITAOF blocks until earlier writes are fsynced to the AOF."""

    def describe(self) -> str:
        """``redis 7.0.15: multi-part AOF, functions, no WAITAOF``: for the start log."""
        named = {
            "multi-part AOF": self.multipart_aof,
            "functions": self.functions,
            "WAITAOF": self.waitaof,
        }
        has = [name for name, present in named.items() if present]
        lacks = [f"no {name}" for name, present in named.items() if not present]
        return f"redis {'.'.join(map(str, self.version))}: " + ", ".join(has + lacks)


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``7.2.4`` -> (7, 2, 4); ``7.0`` -> (7, 0, 0); anything else -> None."""
    found = _VERSION.fullmatch(text.strip())
    if found is None:
        return None
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def supported_version(version_text: str) -> tuple[int, int, int]:
    """The version a server reports, if cronstream can run on it.

    Raises ``RedisVersionUnsupported`` below 6.2, or when the version is unreadable.
    """
    version = parse_version(version_text)
    if version is None:
        raise RedisVersionUnsupported(f"of unknown version {version_text!r}", MINIMUM)
    if version < MINIMUM_VERSION:
        raise RedisVersionUnsupported(f"version {version_text.strip()}", MINIMUM)
    return version


def decide_features(version: tuple[int, int, int], commands: Collection[str]) -> ServerFeatures:
    """The features of a server at ``version`` that knows ``commands``."""
    known = {name.lower() for name in commands}
    return ServerFeatures(
        version=version,
        multipart_aof=version >= MULTIPART_AOF_SINCE,
        functions="function" in known,
        waitaof="waitaof" in known,
    )


@translate_redis_errors
async def server_features(redis: Redis) -> ServerFeatures:
    """Ask the server its version (INFO server), refuse an old one, probe the rest."""
    try:
        info: dict[str, Any] = await redis.info("server")
    except ResponseError as exc:
        # the client opens each connection with HELLO, which Redis has known since 6.0
        if "HELLO" not in str(exc).upper():
            raise
        raise RedisVersionUnsupported("older than 6.0 (it does not know HELLO)", MINIMUM) from exc
    version = supported_version(str(info.get("redis_version", "")))
    return decide_features(version, await _known_commands(redis, PROBED_COMMANDS))


async def _known_commands(redis: Redis, names: tuple[str, ...]) -> set[str]:
    """The ``names`` the server has; none when it will not say (COMMAND denied by ACL).

    The client's own parser for COMMAND cannot read the nil a server returns for an
    unknown name, so the probe runs on a client of the same pool with the raw reply
    (on a cluster, a client of one node: the nodes run one version).
    """
    probe = node_client(redis) if is_cluster(redis) else redis.client()
    probe.set_response_callback("COMMAND", lambda response, **_options: response)
    try:
        reply: list[Any] = await probe.execute_command("COMMAND", "INFO", *names)  # type: ignore[no-untyped-call]
    except ResponseError as exc:
        log.warning("redis does not answer COMMAND INFO (%s): optional features off", exc)
        return set()
    finally:
        await probe.aclose()
    return {name for name, entry in zip(names, reply, strict=True) if entry is not None}
