"""The adapter of tokens.lua: admit a request with a token, create, revoke and list tokens.

Only a token's SHA-256 reaches Redis. Every API process on this Redis shares one rate
bucket per token, kept there. Asking Redis for each request costs a round trip per
request, so a process leases permits instead: one script call checks the token and
takes a few requests from its bucket at once (never more than the bucket holds; besides
the requests waiting, at most limit/LEASE_SHARE, fewer while the token is little used),
and the next requests with that token spend them here without a call.

A lease lives LEASE_S: a revoked token, or a bucket emptied by another process, is seen
within that (an expired token at once: its expiry travels with the lease). Permits left
unspent go back to the bucket with the token's next call (never filling it above its
limit); when none comes they are lost, a lease's worth at most. Only permits the bucket
gave are spent; what a lease changes is when a permit counts: held while the bucket
refills to its top, a lease may let its process admit up to a lease (limit/LEASE_SHARE:
5 of 100 a minute) more than an exact bucket would over the next LEASE_S.
RateLimit-Remaining is the bucket's level at the lease minus what this process spent
since: what other processes spent meanwhile shows from their next lease on, within
LEASE_S.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

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
LEASE_S = 1.0
"""How long a process may spend leased permits, and trusts the token's record with them."""
LEASE_SHARE = 20
"""A lease takes at most limit/LEASE_SHARE permits (at least one)."""
MAX_LEASES = 10_000
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


class Admitted(NamedTuple):
    """What admitting one request with a token found (a tuple: made on every request)."""

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


Ask = tuple[str, int | None, int, int]
"""One admit call: the token's hash, now (None: Redis's clock), permits wanted, given back."""


@dataclass
class Lease:
    """Permits taken from a token's bucket in one call, to spend in this process."""

    scopes: frozenset[Scope]
    limit: int
    window_ms: int
    level: float
    """The bucket's level when the lease was taken, these permits included."""
    granted: int
    expires_ms: int
    until: float
    """The store's monotonic time after which the lease is not spent any more."""
    spent: int = field(default=0)

    def take(self, now_ms: int | None, mono: float) -> Admitted | None:
        """One request admitted by this lease; None: the lease cannot tell (ask Redis)."""
        if mono >= self.until or self.spent >= self.granted:
            return None
        if self.expires_ms and (_wall_ms() if now_ms is None else now_ms) >= self.expires_ms:
            return None
        return self.next()

    def next(self) -> Admitted:
        """The next request of the batch that took this lease: allowed while permits last."""
        allowed = self.spent < self.granted
        self.spent += allowed
        left = self.level - self.spent
        window, limit = self.window_ms, self.limit
        return Admitted(
            Admission.ALLOWED if allowed else Admission.LIMITED,
            self.scopes,
            limit,
            max(0, math.floor(left)),
            math.ceil((limit - left) * window / limit),
            0 if allowed else max(0, math.ceil((1 - left) * window / limit)),
        )

    def following(self, mono: float) -> int:
        """How many permits the token's next lease asks for: twice this one's when it was
        spent in time, else as many as were spent (demand is all it measures)."""
        cap = max(1, self.limit // LEASE_SHARE)
        if self.spent >= self.granted and mono < self.until:
            return min(cap, max(1, self.granted) * 2)
        return min(cap, max(1, self.spent))


class TokenStore:
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        *,
        lease_s: float = LEASE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.lease_s = lease_s
        """0: every request is its own take from the bucket (no lease outlives its call)."""
        self._monotonic = monotonic
        self._script = load_script(redis, "service.store", "tokens.lua")
        self._queue: list[tuple[str, int | None, asyncio.Future[Admitted]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._leases: dict[str, Lease] = {}

    async def _call(self, digest: str, action: str, now_ms: int | None, *extra: Any) -> list[Any]:
        keys = [self.keys.token(token_id(digest)), self.keys.tokens]
        reply: list[Any] = await self._script(
            keys=keys, args=[action, digest, "" if now_ms is None else now_ms, *extra]
        )
        return reply

    async def admit(self, token: str, now_ms: int | None = None) -> Admitted:
        """Look ``token`` up and take one request from its bucket (``now_ms`` None: Redis's
        clock). The token must have passed ``check_token`` already.

        A request spends a permit of the token's lease when this process holds one (no
        call). Otherwise it waits for the next pipeline: while one is in Redis, the next
        requests queue and leave together, each token's in one call that leases permits
        for all of them and more, so a loaded API pays about a round trip per batch."""
        spent = self.spend(token, now_ms)
        if spent is not None:
            return spent
        digest = token_hash(token)
        waiting: asyncio.Future[Admitted] = asyncio.get_running_loop().create_future()
        self._queue.append((digest, now_ms, waiting))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="token-admissions")
        return await waiting

    @translate_redis_errors
    async def standing(self, token: str, now_ms: int | None = None) -> bool:
        """Whether ``token`` is still stored, unrevoked and unexpired (``now_ms`` None:
        Redis's clock), without taking anything from its bucket: for a request that
        outlives its admission (an open event stream)."""
        digest = token_hash(token)
        stored, expires, revoked = await self.redis.hmget(
            self.keys.token(token_id(digest)), ["hash", "expires_ms", "revoked_ms"]
        )
        if stored is None or as_text(stored) != digest or revoked is not None:
            return False
        if now_ms is None:
            seconds, micros = await self.redis.time()
            now_ms = int(seconds) * 1000 + int(micros) // 1000
        return not expires or int(expires) == 0 or now_ms < int(expires)

    def spend(self, token: str, now_ms: int | None = None) -> Admitted | None:
        """A request with ``token`` admitted from the permits this process leased for it,
        without a call and without awaiting anything; None: only ``admit`` can tell."""
        lease = self._leases.get(token_hash(token))
        return None if lease is None else lease.take(now_ms, self._monotonic())

    async def _send(self) -> None:
        """Send the queued admissions, a pipeline at a time, until none are left."""
        while self._queue:
            batch, self._queue = self._queue, []
            groups = self._group(batch)
            asks = [self._ask(digest, now, len(waiting)) for (digest, now), waiting in groups]
            try:
                replies = await self._admit_all(asks) if asks else []
            except BaseException as exc:
                for _, waiting in groups:
                    for one in waiting:
                        if not one.done():
                            one.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise  # cancelled: the waiting requests were told
                continue
            for ask, (_, waiting), reply in zip(asks, groups, replies, strict=True):
                self._grant(ask, waiting, reply)

    def _group(
        self, batch: list[tuple[str, int | None, asyncio.Future[Admitted]]]
    ) -> list[tuple[tuple[str, int | None], list[asyncio.Future[Admitted]]]]:
        """The batch's requests by token and time; those a lease taken meanwhile admits
        are answered here."""
        groups: dict[tuple[str, int | None], list[asyncio.Future[Admitted]]] = {}
        mono = self._monotonic()
        for digest, now, waiting in batch:
            if waiting.done():
                continue
            lease = self._leases.get(digest)
            if lease is not None and (spent := lease.take(now, mono)) is not None:
                waiting.set_result(spent)
                continue
            groups.setdefault((digest, now), []).append(waiting)
        return list(groups.items())

    def _ask(self, digest: str, now_ms: int | None, waiting: int) -> Ask:
        """The call for ``waiting`` requests with one token: permits for each and, leasing,
        the token's next lease; what its last lease did not spend goes back."""
        old = self._leases.pop(digest, None)
        if old is None:
            return digest, now_ms, waiting, 0
        more = old.following(self._monotonic()) if self.lease_s > 0 else 1
        return digest, now_ms, max(waiting, more), old.granted - old.spent

    def _grant(self, ask: Ask, waiting: list[asyncio.Future[Admitted]], reply: list[Any]) -> None:
        outcome = Admission(as_text(reply[0]))
        if len(reply) == 1:  # unknown, revoked or expired: nothing is leased
            for one in waiting:
                if not one.done():
                    one.set_result(Admitted(outcome))
            return
        limit, window, granted, expires = (int(reply[i]) for i in (2, 3, 5, 6))
        lease = Lease(
            _scopes(as_text(reply[1])),
            limit,
            window,
            float(as_text(reply[4])),
            granted,
            expires,
            self._monotonic() + self.lease_s,
        )
        for one in waiting:
            admitted = lease.next()  # a request whose client left still spends its permit
            if not one.done():
                one.set_result(admitted)
        self._keep(ask[0], lease)  # spent or not: the size of the next lease follows it

    def _keep(self, digest: str, lease: Lease) -> None:
        """Hold ``lease`` for the token's next requests (a bounded number of tokens)."""
        if len(self._leases) >= MAX_LEASES:
            mono = self._monotonic()
            for stale in [d for d, held in self._leases.items() if held.until <= mono]:
                del self._leases[stale]
        if len(self._leases) < MAX_LEASES:
            self._leases[digest] = lease

    @translate_redis_errors
    async def _admit_all(self, batch: list[Ask]) -> list[list[Any]]:
        """One pipeline of admit calls; a server that lost the script gets it again first."""
        for _ in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for digest, now_ms, want, back in batch:
                    keys = [self.keys.token(token_id(digest)), self.keys.tokens]
                    now = "" if now_ms is None else now_ms
                    args = (now, want, back)
                    pipe.evalsha(self._script.sha, len(keys), *keys, "admit", digest, *args)
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


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


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
