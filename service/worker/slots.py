"""A worker's attempt slots: at most ``size`` queue entries held at once, all partitions.

A consumer takes every free slot before it claims or reads entries, and gives back
those it did not fill; each entry it hands out holds one slot until its task ends.
So the reads of several partitions together never hold more entries than there are
slots, and no entry waits in memory for a slot, unheartbeated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Slots:
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a worker needs at least one slot, not {size}")
        self.size = size
        self.tasks: set[asyncio.Task[None]] = set()
        self._taken = 0
        self._freed = asyncio.Event()

    @property
    def free(self) -> int:
        return self.size - self._taken

    async def take(self) -> Lease:
        """Wait until a slot is free, then take every free one."""
        while self.free <= 0:
            self._freed.clear()
            await self._freed.wait()
        lease = Lease(self, self.free)
        self._taken += lease.left
        return lease

    def _give_back(self, count: int) -> None:
        self._taken -= count
        if count:
            self._freed.set()


class Lease:
    """Slots taken for one round of claiming and reading; close it to give back the rest."""

    def __init__(self, slots: Slots, count: int) -> None:
        self._slots = slots
        self.left = count

    def start(self, work: Coroutine[Any, Any, None], name: str | None = None) -> None:
        """Run ``work`` in one of the leased slots, which is given back when it ends."""
        if self.left <= 0:
            raise RuntimeError("no slot left in this lease")
        self.left -= 1
        slots = self._slots
        task = asyncio.create_task(work, name=name)
        slots.tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            slots.tasks.discard(finished)
            slots._give_back(1)

        task.add_done_callback(done)

    def keep(self, count: int) -> None:
        """Give back all but ``count`` of the slots still unused."""
        extra = self.left - max(count, 0)
        if extra > 0:
            self.left -= extra
            self._slots._give_back(extra)

    def close(self) -> None:
        self.keep(0)
