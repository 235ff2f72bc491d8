"""The ticker's lease on a partition: one holder at a time, fenced by an epoch.

Rules (the fire script enforces the last one whatever a process believes):
- A lease is taken with ``SET NX PX`` and a random owner token; each acquisition
  increments the partition's epoch.
- The holder renews it every third of its TTL.
- The holder stops firing on its own monotonic deadline (the start of its last
  successful renewal plus the TTL, less a margin) if renewals fail: fail closed.
- Every fire checks owner and epoch in the same script that appends.
- A holder gives a lease up (``release``) at a clean stop and when it holds more than
  its fair share (service/ticker/membership.py); it stops firing before it frees it.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from service.store.keys import Keyspace
from service.store.scripts import load_script

DEFAULT_TTL_MS = 5000


@dataclass
class LeaseState:
    epoch: int = 0
    deadline: float = 0.0  # monotonic seconds; firing is allowed before it
    renewed_at: float = 0.0


class Lease:
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        partition: int,
        ttl_ms: int = DEFAULT_TTL_MS,
        owner: str | None = None,
        role: str = "",
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.partition = partition
        self.ttl_ms = ttl_ms
        self.role = role  # '' for the ticker's lease; another role's has keys of its own
        # the pid in the token lets operators (and fault tests) see who holds a lease
        self.owner = owner or self.new_owner()
        self.state = LeaseState()
        self._script = load_script(redis, "service.ticker", "lease.lua")

    @staticmethod
    def new_owner() -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"

    @property
    def margin_s(self) -> float:
        return self.ttl_ms / 10_000  # a tenth of the TTL, for clock drift and latency

    def held(self) -> bool:
        """Whether this process may fire now, judged by its own monotonic clock."""
        return self.state.epoch > 0 and time.monotonic() < self.state.deadline

    def renew_due(self) -> bool:
        return time.monotonic() - self.state.renewed_at >= self.ttl_ms / 3000

    async def _call(self, action: str) -> int:
        p, role = self.partition, self.role
        keys = [self.keys.lease(p, role), self.keys.epoch(p, role)]
        if not role:
            keys.append(self.keys.wake(p))  # a freed ticker lease wakes the tickers at once
        return int(await self._script(keys=keys, args=[action, self.owner, self.ttl_ms]))

    async def acquire(self) -> bool:
        """Take the lease if it is free (or already ours); True when held."""
        return await self._refresh("acquire")

    async def renew(self) -> bool:
        return await self._refresh("renew")

    async def _refresh(self, action: str) -> bool:
        started = time.monotonic()
        epoch = await self._call(action)
        if epoch == 0:
            self.state = LeaseState()
            return False
        self.state = LeaseState(epoch, started + self.ttl_ms / 1000 - self.margin_s, started)
        return True

    async def release(self) -> None:
        """Stop firing, then free the lease for another ticker (it need not wait the TTL)."""
        epoch, self.state = self.state.epoch, LeaseState()
        if epoch:
            await self._call("release")

    def lost(self) -> None:
        """Step down at once (a fire was fenced)."""
        self.state = LeaseState()
