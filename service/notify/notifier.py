"""``Notifier``: the subscriber, the ticker probe and the delivery loop of one worker
process, started and stopped together."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from dataclasses import dataclass

from redis.asyncio import Redis

from service.clock import Clock, SystemClock
from service.config import outbound_policy_from_env
from service.domain.addresses import OutboundPolicy
from service.notify.channels import Senders
from service.notify.delivery import Delivery
from service.notify.subscriber import Subscriber
from service.store.keys import Keyspace
from service.store.notifications import NotificationStore
from service.tasks import cancel_and_wait
from service.worker.targets.http import make_session


@dataclass(frozen=True)
class NotifierTiming:
    """How fast a notifier reacts and retries (tests shorten every one)."""

    block_ms: int = 1000
    probe_s: float = 5.0
    idle_ms: int = 180_000
    """An entry held this long by one process is taken over: longer than the longest
    attempt (a channel's timeout_s, at most 120 s), so a slow send is not sent twice."""
    max_attempts: int = 5
    retry_base_ms: int = 1000
    concurrency: int = 8


class Notifier:
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        *,
        outbound: OutboundPolicy | None = None,
        timing: NotifierTiming | None = None,
        clock: Clock | None = None,
        consumer: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.outbound = outbound
        self.timing = timing or NotifierTiming()
        self.clock = clock or SystemClock()
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.store = NotificationStore(redis, keys, secret_key)
        t = self.timing
        self.subscriber = Subscriber(
            redis,
            keys,
            self.store,
            self.consumer,
            block_ms=t.block_ms,
            idle_ms=t.idle_ms,
            probe_s=t.probe_s,
        )
        self.delivery: Delivery | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Run every loop until ``stop``; the HTTP session closes with them."""
        t = self.timing
        async with make_session(limit=t.concurrency * 2, outbound=self.outbound) as session:
            policy = self.outbound if self.outbound is not None else outbound_policy_from_env()
            senders = Senders(session, policy, self.clock.now_ms)
            self.delivery = Delivery(
                self.store,
                senders,
                self.consumer,
                max_attempts=t.max_attempts,
                retry_base_ms=t.retry_base_ms,
                concurrency=t.concurrency,
                idle_ms=t.idle_ms,
                block_ms=t.block_ms,
            )
            loops = [self.subscriber.run(p, stop) for p in range(self.keys.partitions)]
            loops += [self.subscriber.probe(stop), self.delivery.run(stop)]
            tasks = [asyncio.create_task(loop) for loop in loops]
            try:
                await asyncio.gather(*tasks)
            finally:
                await cancel_and_wait(tasks)
