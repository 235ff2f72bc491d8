"""The consumer loop: per partition, fill the worker's free slots, stale entries first.

Each round takes every free slot (``Slots``), claims entries that went stale on a
dead or stopped worker (``Maintenance.claim_stale``), and only then reads new entries
(XREADGROUP) for the slots left. So a worker that is always busy still takes over a
lost worker's runs as soon as one of its slots frees, rather than after the backlog
of new runs. When there is nothing to claim or read, the loop blocks on the queue;
with several partitions a blocking read holds one slot only, so an idle partition
does not keep slots from a busy one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.store.keys import Keyspace
from service.store.runs import GROUP
from service.worker.maintenance import Maintenance
from service.worker.slots import Lease, Slots
from service.worker.state import QueueEntry

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
RETRY_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0)

Handler = Callable[[QueueEntry], Coroutine[Any, Any, None]]


class Consumer:
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        name: str,
        slots: Slots,
        maintenance: Maintenance,
        handle: Handler,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.name = name
        self.slots = slots
        self.maintenance = maintenance
        self.handle = handle

    async def ensure_group(self, partition: int) -> None:
        try:
            await self.redis.xgroup_create(self.keys.queue(partition), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def loop(self, partition: int, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self.round(partition)
                failures = 0
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                failures += 1
                log.warning(
                    "worker partition %d: redis unavailable (%s)",
                    partition,
                    exc,
                    extra={"partition": partition},
                )
                await asyncio.sleep(RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S)) - 1])
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.ensure_group(partition)  # the queue was deleted (a flush)

    async def round(self, partition: int) -> None:
        """Wait for a free slot; fill the free slots with stale entries, then new ones."""
        lease = await self.slots.take()
        try:
            stale = await self.maintenance.claim_stale(partition, lease.left)
            self._start(lease, stale)
            if lease.left:
                self._start(lease, await self._read(partition, lease, wait=not stale))
        finally:
            lease.close()

    async def _read(self, partition: int, lease: Lease, *, wait: bool) -> list[QueueEntry]:
        if wait and self.keys.partitions > 1:
            entries = await self._xreadgroup(partition, lease.left, None)
            if entries:
                return entries
            lease.keep(1)
        return await self._xreadgroup(partition, lease.left, READ_BLOCK_MS if wait else None)

    async def _xreadgroup(self, partition: int, count: int, block: int | None) -> list[QueueEntry]:
        queue = self.keys.queue(partition)
        reply: Any = await self.redis.xreadgroup(
            GROUP, self.name, {queue: ">"}, count=count, block=block
        )
        return [
            QueueEntry.parse(partition, entry_id, fields)
            for _stream, entries in reply or []
            for entry_id, fields in entries
        ]

    def _start(self, lease: Lease, entries: list[QueueEntry]) -> None:
        for entry in entries:
            lease.start(self.handle(entry), name=f"run-{entry.run_id}")
