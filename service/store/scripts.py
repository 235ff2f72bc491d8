"""Loading Lua scripts: each script's body is joined onto the shared prelude.

The prelude (``lua/prelude.lua``) holds what every script needs: the hash-chained
append, operation records for retry safety, event builders and the server clock.
"""

from __future__ import annotations

import secrets
from functools import cache
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

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
