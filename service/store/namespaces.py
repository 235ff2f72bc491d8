"""Namespaces in Redis: the namespaces a token is for, and each namespace's quota.

A token's namespaces are fixed when it is made (revoking it changes nothing else), so each
API process keeps them per token id after the first read: a request pays no extra round
trip once its token has been seen. Whether the token is valid still is the admission's
question (service/store/tokens.py), asked on every request before this one.
"""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from service.domain.namespaces import Quota
from service.domain.tokens import DEFAULT_NAMESPACES
from service.store.boundary import translate_redis_errors
from service.store.keys import Keyspace

CACHED_TOKENS = 10_000
"""Token ids whose namespaces a process keeps; past it, it forgets them all and reads again."""


class TokenNamespaces:
    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self._known: dict[str, tuple[str, ...]] = {}

    @translate_redis_errors
    async def of(self, token_id: str) -> tuple[str, ...]:
        """The namespaces of the stored token ``token_id`` (``default`` for one made before
        tokens carried any)."""
        known = self._known.get(token_id)
        if known is not None:
            return known
        raw = await self.redis.hget(self.keys.token(token_id), "namespaces")
        found = tuple(orjson.loads(raw)) if raw else ()
        if len(self._known) >= CACHED_TOKENS:
            self._known.clear()
        self._known[token_id] = found or DEFAULT_NAMESPACES
        return self._known[token_id]


QUOTA_FIELDS = ("max_schedules", "min_interval_ms", "max_catchup")


class NamespaceQuotas:
    """Each namespace's quota, one hash per namespace (``cs:{auth}:namespace:<name>``;
    a limit absent from it: none), and the set of namespaces that have one."""

    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys

    @translate_redis_errors
    async def get(self, namespace: str) -> Quota:
        raw = await self.redis.hmget(self.keys.namespace(namespace), list(QUOTA_FIELDS))
        values = [None if v is None else int(v) for v in raw]
        return Quota(*values)

    @translate_redis_errors
    async def set(self, namespace: str, changes: dict[str, int | None]) -> Quota:
        """Set (int) or lift (None) the limits named in ``changes``; the rest stay."""
        key = self.keys.namespace(namespace)
        async with self.redis.pipeline(transaction=True) as pipe:
            for name, value in changes.items():
                if value is not None:
                    pipe.hset(key, name, value)
            lifted = [k for k, v in changes.items() if v is None]
            if lifted:
                pipe.hdel(key, *lifted)
            pipe.sadd(self.keys.namespaces, namespace)
            await pipe.execute()
        return await self.get(namespace)

    @translate_redis_errors
    async def names(self) -> list[str]:
        members = await self.redis.smembers(self.keys.namespaces)
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)
