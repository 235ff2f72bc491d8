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
import logging
from collections.abc import Callable, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.store.eventstore import as_text
from service.store.keys import Keyspace
from service.store.scripts import load_script
from service.tasks import cancel_and_wait
from service.ticker.lease import Lease

log = logging.getLogger(__name__)

ROLE = "tickers"
RETRY_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0)
"""Waits before the next try after 1, 2, … failures in a row (the last one repeats)."""


def retry_delay(failures: int) -> float:
    """The wait after ``failures`` failures in a row before this one (0: the first)."""
    return RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]


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


class FairShare:
    """A member's leases, one per partition, kept to its fair share of them: it takes free
    ones while below the share and gives a surplus one up at renewal time, so that a
    member that joins gets its share. ``name`` says whose (``ticker``, ``projector``)."""

    def __init__(self, membership: Membership, leases: Sequence[Lease], name: str) -> None:
        self.membership = membership
        self.leases = leases
        self.name = name
        self._acquiring = 0  # acquisitions in flight, counted against the share

    def held(self) -> list[int]:
        """The partitions whose lease this member holds now."""
        return [lease.partition for lease in self.leases if lease.held()]

    async def take(self, lease: Lease) -> bool:
        """Acquire a free lease if below the share; True when taken. The partitions'
        loops take leases concurrently: those in flight count, so none overshoots."""
        if len(self.held()) + self._acquiring >= self.membership.share():
            return False
        self._acquiring += 1
        try:
            return await lease.acquire()
        finally:
            self._acquiring -= 1

    async def keep(self, lease: Lease) -> bool:
        """At renewal time: give the lease up if more than the share is held, else renew
        it; True while it is still held."""
        if not lease.renew_due():
            return True
        if len(self.held()) > self.membership.share():
            await lease.release()
            log.info("%s partition %d: lease released to rebalance", self.name, lease.partition)
        elif await lease.renew():
            return True
        else:
            log.warning(
                "%s partition %d: lease renewal refused; stepping down", self.name, lease.partition
            )
        return False

    async def heartbeat(
        self, stop: asyncio.Event, changed: Callable[[], None] | None = None
    ) -> None:
        """Keep this member counted until ``stop``, calling ``changed`` when members come
        or go. Whatever fails (a cluster that is down answers CLUSTERDOWN), the heartbeat
        goes on: a member whose heartbeats stop loses its share to the others."""
        failures = 0
        while not stop.is_set():
            try:
                if await self.membership.beat():
                    log.info(
                        "%ss: %d live, this one's share %d of %d partition(s)",
                        self.name,
                        len(self.membership.members),
                        self.membership.share(),
                        len(self.leases),
                    )
                    if changed is not None:
                        changed()
                failures, pause = 0, self.membership.interval_s
            except Exception as exc:
                log.warning("%ss: heartbeat failed (%s)", self.name, exc)
                pause = retry_delay(failures)
                failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause)


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
