"""A circuit breaker per target host, shared by every worker through Redis.

States (``BreakerState``): ``closed`` lets attempts through and counts consecutive
failures; at ``threshold`` it turns ``open`` and attempts fail fast for
``cooldown_ms``; then the first caller of ``allow`` turns it ``half_open`` and is
the one probe let through, every other caller is refused until the probe reports.
A successful probe closes it, a failed one opens it again for another cool-down.
A probe that never reports (its worker died) is presumed lost after
``probe_timeout_ms`` (default: the cool-down) and the next caller probes instead.

Breakers are kept per namespace: a name is the host, qualified by the namespace of the
workflow that calls it outside ``default`` (``acme/api.example.com``), so one tenant's
failures open no breaker of another's, and a tenant lists only its own.

Every transition is one call of ``breaker.lua``. Time is the clock passed in, or
Redis's own ``TIME``: never each worker's wall clock. A recorded outcome whose
reply was lost and retried by the client may count twice; the breaker only
decides when to fail fast, so that costs at most an earlier cool-down.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis

from service.clock import Clock
from service.domain import namespaces
from service.domain.timeutil import to_rfc3339
from service.store.boundary import translate_redis_errors
from service.store.keys import Keyspace
from service.store.scripts import load_script

DEFAULT_THRESHOLD = 5
DEFAULT_COOLDOWN_MS = 30_000


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def breaker_host(url: str) -> str:
    """The breaker's name for a target URL: its lowercased host, and port if one is given."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    return f"{host}:{parts.port}" if parts.port else host


class CircuitBreaker:
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        threshold: int = DEFAULT_THRESHOLD,
        cooldown_ms: int = DEFAULT_COOLDOWN_MS,
        clock: Clock | None = None,
        probe_timeout_ms: int | None = None,
    ) -> None:
        if threshold < 1 or cooldown_ms < 0:
            raise ValueError("threshold must be >= 1 and cooldown_ms >= 0")
        self.redis = redis
        self.keys = keys
        self.threshold = threshold
        self.cooldown_ms = cooldown_ms
        self.probe_timeout_ms = cooldown_ms if probe_timeout_ms is None else probe_timeout_ms
        self.clock = clock
        self._script = load_script(redis, "service.worker", "breaker.lua")

    async def _call(self, action: str, host: str) -> int:
        now = "" if self.clock is None else str(self.clock.now_ms())
        keys = [self.keys.breaker(host), self.keys.breaker_hosts]
        args: list[str | int] = [
            action,
            now,
            self.threshold,
            self.cooldown_ms,
            self.probe_timeout_ms,
            host,
        ]
        return int(await self._script(keys=keys, args=args))

    async def allow(self, host: str) -> bool:
        """Whether an attempt on ``host`` may go out now (False: fail it fast)."""
        return await self._call("allow", host) == 1

    async def record(self, host: str, ok: bool) -> None:
        """Report the outcome of an attempt that ``allow`` let through."""
        await self._call("success" if ok else "failure", host)

    async def state(self, host: str) -> dict[str, Any]:
        """``{host, state, failures, opened_at}`` (``opened_at`` RFC 3339 or None)."""
        raw = await self.redis.hgetall(self.keys.breaker(host))
        return _render(host, raw)

    @translate_redis_errors
    async def states(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every breaker that has recorded an outcome, by name: of ``namespace`` only,
        with bare host names (None: of every namespace, with the names as kept, which
        carry the namespace outside ``default``)."""
        members = await self.redis.zrange(self.keys.breaker_hosts, 0, -1)
        names = sorted(_text(h) for h in members)
        if namespace is not None:
            names = [n for n in names if namespaces.local(n, namespace) is not None]
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self.keys.breaker(name))
            raws = await pipe.execute()
        shown = names if namespace is None else [namespaces.split(n)[1] for n in names]
        return [_render(host, raw) for host, raw in zip(shown, raws, strict=True)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _render(host: str, raw: dict[Any, Any]) -> dict[str, Any]:
    fields = {_text(k): _text(v) for k, v in raw.items()}
    opened_at = fields.get("opened_at")
    return {
        "host": host,
        "state": BreakerState(fields.get("state", BreakerState.CLOSED)).value,
        "failures": int(fields.get("failures", 0)),
        "opened_at": to_rfc3339(int(opened_at)) if opened_at else None,
    }
