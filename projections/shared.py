"""Projector processes that divide the partitions among them.

One projector process follows every partition. When one cannot keep up, several
``serve --roles projector`` processes share the work the way tickers do: each
heartbeats into a membership (``cs:{members}:projectors``), takes a fair share
(``ceil(P / M)``) of per-partition projector leases (``cs:{p}:lease:projector``), and
follows only the partitions whose lease it holds. A leaving process frees its leases;
a dead one's expire after the TTL and the others take them.

The lease only divides the work. Two processes that briefly follow one partition (a
lease taken over while its old holder finishes a batch) are still safe: each batch
moves the view checkpoint atomically from the position it read (apply.lua), so a
batch computed from a stale position is refused and nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from projections.projector import BLOCK_MS, Projector
from service.store.keys import Keyspace
from service.ticker.lease import DEFAULT_TTL_MS, Lease
from service.ticker.membership import Membership, hold_until_stopped

log = logging.getLogger(__name__)

ROLE = "projector"
MEMBERS = "projectors"
RETRY_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0)


class SharedProjector:
    """A projector process's fair share of the partitions, kept by leases."""

    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        ttl_ms: int = DEFAULT_TTL_MS,
        owner: str | None = None,
        projector: Projector | None = None,
    ) -> None:
        owner = owner or Lease.new_owner()
        self.projector = projector or Projector(redis, keys)
        self.leases = [Lease(redis, keys, p, ttl_ms, owner, ROLE) for p in range(keys.partitions)]
        self.membership = Membership(redis, keys, owner, ttl_ms, MEMBERS)
        # a follow blocks at most this long, so a lease is renewed well before it lapses
        self.block_ms = min(BLOCK_MS, ttl_ms // 5)

    def held(self) -> list[int]:
        return [lease.partition for lease in self.leases if lease.held()]

    async def run(self, stop: asyncio.Event) -> None:
        """Follow this process's share of the partitions until ``stop``; then free the
        leases and leave, so the other projector processes take them at once."""
        with contextlib.suppress(RedisError, OSError):
            await self.membership.beat()
        tasks = [
            asyncio.create_task(self._heartbeat(stop), name="projector-members"),
            *(asyncio.create_task(self._follow(lease, stop)) for lease in self.leases),
        ]
        await hold_until_stopped(self.membership, self.leases, tasks, stop)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self.membership.beat()
                failures, pause = 0, self.membership.interval_s
            except (RedisError, OSError) as exc:
                log.warning("projectors: heartbeat failed (%s)", exc)
                pause = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
                failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause)

    async def _follow(self, lease: Lease, stop: asyncio.Event) -> None:
        """Hold the partition's lease while within this process's share, and follow its
        log while holding it."""
        failures = 0
        while not stop.is_set():
            try:
                if await self._keep(lease):
                    await self.projector.step(lease.partition, block_ms=self.block_ms)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=lease.ttl_ms / 5000)
                failures = 0
            except (RedisError, OSError) as exc:
                log.warning("projector partition %d: redis unavailable (%s)", lease.partition, exc)
                delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
                failures += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _keep(self, lease: Lease) -> bool:
        """Take the lease when free and within the share, renew it when due, give it up
        when this process holds more than its share; True while it is held."""
        share = self.membership.share()
        if not lease.held():
            return len(self.held()) < share and await lease.acquire()
        if not lease.renew_due():
            return True
        if len(self.held()) > share:
            await lease.release()
            log.info("projector partition %d: lease released to rebalance", lease.partition)
            return False
        return await lease.renew()
