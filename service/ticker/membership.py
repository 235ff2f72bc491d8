"""Ticker membership: who is alive, and how many partition leases each may hold.

Every ticker heartbeats into one sorted set (``cs:{members}:tickers``), scored by
the server's clock; a member silent for a lease TTL is dropped by the next
heartbeat of any other. From the live members each ticker
derives its share of the partitions, ``ceil(P / M)``: it takes free leases up to
it, and gives up the surplus at renewal time when a member joins. A holder within
its share keeps its leases, so a ticker that comes back (restarted, or resumed
after a stall) does not pull leases back from the ones that took over.

The share only says how many leases a ticker should *try* to hold; which process
may fire is still decided by the lease and its fencing epoch alone. So members
that briefly disagree about the membership (one has seen a join, another not yet)
can leave a partition unowned for a moment or make a ticker hold one lease too
many, never make two tickers fire the same partition.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.store.eventstore import as_text
from service.store.keys import Keyspace
from service.store.scripts import load_script
from service.tasks import cancel_and_wait
from service.ticker.lease import Lease

ROLE = "tickers"


def fair_share(partitions: int, members: int) -> int:
    """How many of ``partitions`` leases each of ``members`` live tickers may hold."""
    return -(-partitions // max(members, 1))


class Membership:
    """One ticker's heartbeat and its view of the live members."""

    def __init__(
        self, redis: Redis, keys: Keyspace, owner: str, ttl_ms: int, role: str = ROLE
    ) -> None:
        self.key = keys.members(role)
        self.partitions = keys.partitions
        self.owner = owner
        self.ttl_ms = ttl_ms
        self.members: list[str] = [owner]
        self._script = load_script(redis, "service.ticker", "membership.lua")

    @property
    def interval_s(self) -> float:
        """Heartbeats come five times per TTL, so a missed one or two drop nobody."""
        return self.ttl_ms / 5000

    def share(self) -> int:
        return fair_share(self.partitions, len(set(self.members) | {self.owner}))

    async def beat(self) -> bool:
        """Heartbeat; True when the live members changed since the last one."""
        reply = await self._script(keys=[self.key], args=["beat", self.owner, self.ttl_ms])
        members = sorted(as_text(m) for m in reply)
        changed = members != self.members
        self.members = members
        return changed

    async def leave(self) -> None:
        await self._script(keys=[self.key], args=["leave", self.owner, self.ttl_ms])
        self.members = [self.owner]


async def hold_until_stopped(
    membership: Membership,
    leases: Sequence[Lease],
    tasks: Sequence[asyncio.Task[None]],
    stop: asyncio.Event,
) -> None:
    """Let a member's ``tasks`` run until ``stop``; then end them, free its leases and
    leave, so the other members take its partitions at once rather than after the TTL."""
    try:
        await stop.wait()
    finally:
        await cancel_and_wait(tasks)
        # each on its own: on a cluster with a node down, the others' leases still go
        for lease in leases:
            with contextlib.suppress(RedisError, OSError):
                await lease.release()
        with contextlib.suppress(RedisError, OSError):
            await membership.leave()
