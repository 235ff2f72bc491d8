"""Tokens for tests of the API with authentication on."""

from __future__ import annotations

from redis.asyncio import Redis

from service.domain.tokens import Rate, Scope
from service.store.keys import Keyspace
from service.store.tokens import NewToken, TokenStore, new_token

GENEROUS = Rate(1_000_000, 60_000)
"""A rate no test reaches, for tokens whose tests are not about the limit."""


async def make_token(
    redis: Redis,
    *scopes: Scope,
    keys: Keyspace | None = None,
    rate: Rate = GENEROUS,
    lifetime_ms: int | None = None,
    now_ms: int | None = None,
    name: str = "test",
    namespaces: tuple[str, ...] = ("default",),
) -> str:
    """A stored token with ``scopes`` (created at ``now_ms``; None: Redis's clock)."""
    token = new_token()
    spec = NewToken(name, frozenset(scopes), rate, lifetime_ms, namespaces)
    created = await TokenStore(redis, keys or Keyspace()).create(token, spec, now_ms=now_ms)
    assert created is not None and created.new
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
