"""The adapter of tokens.lua: admit a request with a token, create, revoke and list tokens.

Only a token's SHA-256 reaches Redis. Admitting a request is one script call: the
token's record and its rate bucket are read and the request is taken from the bucket
in one step, so every API process on this Redis shares one limit per token.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from service.domain.tokens import (
    ALPHABET,
    BODY_LENGTH,
    DEFAULT_NAMESPACES,
    ID_LENGTH,
    Rate,
    Scope,
    TokenRecord,
    parse_scopes,
    token_from_body,
    token_hash,
    token_id,
)
from service.store.boundary import translate_redis_errors
from service.store.eventstore import as_text
from service.store.keys import Keyspace
from service.store.scripts import load_script

LIST_BOUND = 10_000
_ID = re.compile(f"[0-9a-f]{{{ID_LENGTH}}}")


def new_token() -> str:
    """A fresh token: BODY_LENGTH characters from the OS's secure random source."""
    return token_from_body("".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH)))


class Admission(StrEnum):
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    EXPIRED = "expired"
    ALLOWED = "allowed"
    LIMITED = "limited"


@dataclass(frozen=True)
class Admitted:
    """What admitting one request with a token found."""

    outcome: Admission
    scopes: frozenset[Scope] = frozenset()
    limit: int = 0
    remaining: int = 0
    reset_ms: int = 0
    retry_ms: int = 0


@dataclass(frozen=True)
class Created:
    id: str
    new: bool
    """False: a token with this hash was stored before (a repeated CRONSTREAM_ADMIN_TOKEN)."""
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None


@dataclass(frozen=True)
class NewToken:
    """A token to store: who it is for, what it may do, how often, for how long."""

    name: str
    scopes: frozenset[Scope]
    rate: Rate
    lifetime_ms: int | None = None
    namespaces: tuple[str, ...] = DEFAULT_NAMESPACES


class TokenStore:
    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self._script = load_script(redis, "service.store", "tokens.lua")
        self._queue: list[tuple[str, int | None, asyncio.Future[list[Any]]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def _call(self, digest: str, action: str, now_ms: int | None, *extra: Any) -> list[Any]:
        keys = [self.keys.token(token_id(digest)), self.keys.tokens]
        reply: list[Any] = await self._script(
            keys=keys, args=[action, digest, "" if now_ms is None else now_ms, *extra]
        )
        return reply

    async def admit(self, token: str, now_ms: int | None = None) -> Admitted:
        """Look ``token`` up and take one request from its bucket (``now_ms`` None: Redis's
        clock). The token must have passed ``check_token`` already.

        Admissions of concurrent requests travel together: while one pipeline of them is
        in Redis, the next ones queue and leave in the next, so a loaded API pays about one
        round trip per batch instead of one per request (each is still its own script
        call, in the order they came)."""
        waiting: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((token_hash(token), now_ms, waiting))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="token-admissions")
        return _admitted(await waiting)

    async def _send(self) -> None:
        """Send the queued admissions, a pipeline at a time, until none are left."""
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                replies = await self._admit_all([(digest, now) for digest, now, _ in batch])
            except BaseException as exc:
                for *_, waiting in batch:
                    if not waiting.done():
                        waiting.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise  # cancelled: the waiting requests were told
                continue
            for (*_, waiting), reply in zip(batch, replies, strict=True):
                if not waiting.done():
                    waiting.set_result(reply)

    @translate_redis_errors
    async def _admit_all(self, batch: list[tuple[str, int | None]]) -> list[list[Any]]:
        """One pipeline of admit calls; a server that lost the script gets it again first."""
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for digest, now_ms in batch:
                    keys = [self.keys.token(token_id(digest)), self.keys.tokens]
                    now = "" if now_ms is None else now_ms
                    pipe.evalsha(self._script.sha, len(keys), *keys, "admit", digest, now)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in replies):
                break
            # no script ran (it is missing for all of them alike): loading it and sending the
            # batch again counts nothing twice
            await self.redis.script_load(self._script.script)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def aclose(self) -> None:
        """Wait for the admissions in flight (the app's cleanup)."""
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)

    @translate_redis_errors
    async def create(
        self, token: str, spec: NewToken, *, first: bool = False, now_ms: int | None = None
    ) -> Created | None:
        """Store ``token``'s hash with ``spec``; with ``first``, only when no token exists
        (None when one does)."""
        digest = token_hash(token)
        args = [
            token_id(digest),
            spec.name,
            ",".join(sorted(spec.scopes)),
            orjson.dumps(list(spec.namespaces)),
            spec.rate.limit,
            spec.rate.window_ms,
            spec.lifetime_ms or 0,
            "first" if first else "",
        ]
        reply = await self._call(digest, "create", now_ms, *args)
        if as_text(reply[0]) == "skipped":
            return None
        created, expires, revoked = (int(v) for v in reply[1:4])
        return Created(
            token_id(digest),
            as_text(reply[0]) == "created",
            created,
            expires or None,
            revoked or None,
        )

    @translate_redis_errors
    async def revoke(self, ident: str, now_ms: int | None = None) -> tuple[str, int | None]:
        """Revoke the token of id ``ident``: ('revoked' | 'already', when) or ('unknown', None)."""
        if _ID.fullmatch(ident) is None:
            return "unknown", None
        reply: list[Any] = await self._script(
            keys=[self.keys.token(ident), self.keys.tokens],
            args=["revoke", "", "" if now_ms is None else now_ms],
        )
        return as_text(reply[0]), int(reply[1]) if len(reply) > 1 else None

    @translate_redis_errors
    async def count(self) -> int:
        return int(await self.redis.zcard(self.keys.tokens))

    @translate_redis_errors
    async def list(self, limit: int = LIST_BOUND) -> list[TokenRecord]:
        """Tokens, oldest first (revoked and expired ones too), at most ``limit``."""
        ids = [as_text(i) for i in await self.redis.zrange(self.keys.tokens, 0, limit - 1)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for ident in ids:
                pipe.hgetall(self.keys.token(ident))
            rows: list[dict[Any, Any]] = await pipe.execute()
        return [_record(ident, row) for ident, row in zip(ids, rows, strict=True) if row]


def _admitted(reply: list[Any]) -> Admitted:
    outcome = Admission(as_text(reply[0]))
    if len(reply) == 1:
        return Admitted(outcome)
    limit, remaining, reset_ms, retry_ms = (int(v) for v in reply[2:6])
    return Admitted(outcome, _scopes(as_text(reply[1])), limit, remaining, reset_ms, retry_ms)


@lru_cache(maxsize=256)
def _scopes(text: str) -> frozenset[Scope]:
    return frozenset(Scope(s) for s in text.split(",") if s)


def _record(ident: str, raw: dict[Any, Any]) -> TokenRecord:
    row = {as_text(k): as_text(v) for k, v in raw.items()}

    def ms(name: str) -> int | None:
        value = int(row.get(name) or 0)
        return value or None

    return TokenRecord(
        id=ident,
        name=row.get("name", ""),
        scopes=parse_scopes(row.get("scopes", "")) if row.get("scopes") else frozenset(),
        namespaces=tuple(orjson.loads(row.get("namespaces") or "[]")) or DEFAULT_NAMESPACES,
        rate=Rate(int(row.get("limit") or 0), int(row.get("window_ms") or 1)),
        created_ms=int(row.get("created_ms") or 0),
        expires_ms=ms("expires_ms"),
        revoked_ms=ms("revoked_ms"),
        last_used_ms=ms("used_ms"),
    )
