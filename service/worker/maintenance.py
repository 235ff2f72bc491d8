"""Reclaiming and upkeep of a worker's queue entries, per partition.

- Heartbeat: the entries of attempts in flight are claimed again by their own
  consumer (XCLAIM, min idle 0, JUSTID: the delivery count stays), so only a dead or
  stopped worker's entries go idle.
- Cancellation: a run's ``cancel`` flag reaches its attempt; ``terminate`` cancels the
  attempt's task outright.
- Retries: due retries move back to the queue (the run script does it atomically).
- Reclaiming: entries idle longer than the reclaim time are claimed (XAUTOCLAIM) by
  the consumer loop, ahead of new entries, in the slots it has free; the loop asks
  for them at most once per maintenance interval (``claim_stale``), so reclaiming
  costs a busy worker a few commands a second, yet cannot be starved by new work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.domain.runs import CancelMode
from service.store.eventstore import as_text
from service.store.keys import Keyspace
from service.store.runs import GROUP, RunStore
from service.worker.state import InFlight, QueueEntry, WorkerStats

log = logging.getLogger(__name__)

RECLAIM_COUNT = 50
"""The most stale entries claimed in one call."""

MAX_INTERVAL_S = 0.25


class Maintenance:
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        runs: RunStore,
        *,
        consumer: str,
        idle_bound_ms: int,
        inflight: dict[str, InFlight],
        stats: WorkerStats,
        now_ms: Callable[[], int],
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.runs = runs
        self.consumer = consumer
        self.idle_bound_ms = idle_bound_ms
        self.inflight = inflight
        self.stats = stats
        self.now_ms = now_ms
        # several heartbeats per reclaim time, so a live worker's entries never go stale
        self.interval_s = min(idle_bound_ms / 3000, MAX_INTERVAL_S)
        self._claim_after: dict[int, float] = {}

    async def loop(self, partition: int, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self.tick(partition)
                failures = 0
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                failures = min(failures + 1, 10)
                log.warning("worker maintenance %d: redis unavailable (%s)", partition, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s * (1 + failures))

    async def tick(self, partition: int) -> None:
        """One round: heartbeat, pass on cancellations, requeue due retries."""
        mine = [f for f in self.inflight.values() if f.partition == partition]
        if mine:
            await self.redis.xclaim(
                self.keys.queue(partition),
                GROUP,
                self.consumer,
                0,
                [f.entry_id for f in mine],
                justid=True,
            )
            await self._pass_cancels(partition, mine)
        await self.runs.requeue_due(partition, self.now_ms())

    async def _pass_cancels(self, partition: int, mine: list[InFlight]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for flight in mine:
                pipe.hget(self.keys.run(partition, flight.ctx.run_id), "cancel")
            flags: list[Any] = await pipe.execute()
        for flight, flag in zip(mine, flags, strict=True):
            if flag is None:
                continue
            flight.ctx.cancelled.set()
            if as_text(flag) == CancelMode.TERMINATE and flight.task and not flight.task.done():
                flight.terminated = True
                flight.task.cancel()

    async def claim_stale(self, partition: int, most: int) -> list[QueueEntry]:
        """Up to ``most`` entries idle past the reclaim time, now this consumer's.

        Asks Redis at most once per interval, unless the last call found as many as it
        could take (then more may be waiting).
        """
        now = time.monotonic()
        if most <= 0 or now < self._claim_after.get(partition, 0.0):
            return []
        count = min(most, RECLAIM_COUNT)
        reply: Any = await self.redis.xautoclaim(
            self.keys.queue(partition), GROUP, self.consumer, self.idle_bound_ms, "0-0", count=count
        )
        claimed = [
            QueueEntry.parse(partition, entry_id, fields)
            for entry_id, fields in reply[1]
            if fields is not None  # deleted from the stream meanwhile: nothing to run
        ]
        self._claim_after[partition] = now if len(reply[1]) >= count else now + self.interval_s
        self.stats.reclaimed += len(claimed)
        return claimed
