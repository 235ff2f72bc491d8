"""Loading Lua scripts: each script's body is joined onto the shared prelude.

The prelude (``lua/prelude.lua``) holds what every script needs: the hash-chained
append, operation records for retry safety, event builders and the server clock.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

OP_TTL_MS = 60_000
"""How long a script remembers an operation's reply. The client's retries of one call
are all sent within about 22 s (a 5 s socket timeout, 3 retries, backoff capped at
0.5 s: see service/connection.py's ``connect``); the record must outlive them, and no
longer, since every worker start and finish leaves one (~100 bytes each)."""


@cache
def prelude() -> str:
    return resources.files("service.store").joinpath("lua/prelude.lua").read_text()


@cache
def source(package: str, name: str) -> str:
    """The full source of a script: the prelude, then the script's own file."""
    return prelude() + resources.files(package).joinpath(name).read_text()


def load_script(redis: Redis, package: str, name: str) -> AsyncScript:
    return redis.register_script(source(package, name))


def new_op() -> str:
    """A token for one logical script call, kept across the client's retries of it."""
    return secrets.token_hex(12)


ScriptCall = tuple[Sequence[Any], Sequence[Any]]
"""A script call's keys and arguments."""


async def call_pipelined(
    redis: Redis, script: AsyncScript, calls: Sequence[ScriptCall]
) -> list[Any]:
    """``script`` once per call, in one pipeline: the replies in order, or the first error.

    redis-py's own pipelines ask whether every script they call is loaded (SCRIPT
    EXISTS) before each execute: a round trip of its own, which kept the ticker from
    sending a batch of fires before planning the next one. Here the calls are sent at
    once; a call refused for want of the script (Redis restarted, or its scripts were
    flushed) ran nothing, and is sent again with the script loaded.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    for at, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            keys, args = calls[at]
            replies[at] = await script(keys=keys, args=args)  # loads it, then calls
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies
