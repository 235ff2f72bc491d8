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
from service.ticker.membership import FairShare, Membership, hold_until_stopped, retry_delay

log = logging.getLogger(__name__)

ROLE = "projector"
MEMBERS = "projectors"


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
        self.share = FairShare(self.membership, self.leases, ROLE)
        # a follow blocks at most this long, so a lease is renewed well before it lapses
        self.block_ms = min(BLOCK_MS, ttl_ms // 5)

    def held(self) -> list[int]:
        return self.share.held()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow this process's share of the partitions until ``stop``; then free the
        leases and leave, so the other projector processes take them at once."""
        with contextlib.suppress(RedisError, OSError):
            await self.membership.beat()
        tasks = [
            asyncio.create_task(self.share.heartbeat(stop), name="projector-members"),
            *(asyncio.create_task(self._follow(lease, stop)) for lease in self.leases),
        ]
        await hold_until_stopped(self.membership, self.leases, tasks, stop)

    async def _follow(self, lease: Lease, stop: asyncio.Event) -> None:
        """Hold the partition's lease while within this process's share, and follow its
        log while holding it."""
        failures = 0
        while not stop.is_set():
            try:
                held = await (self.share.keep(lease) if lease.held() else self.share.take(lease))
                if held:
                    await self.projector.step(lease.partition, block_ms=self.block_ms)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=lease.ttl_ms / 5000)
                failures = 0
            except (RedisError, OSError) as exc:
                log.warning("projector partition %d: redis unavailable (%s)", lease.partition, exc)
                delay = retry_delay(failures)
                failures += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
