"""What a worker process keeps of its work: queue entries, attempts in flight, counters."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from service.store.eventstore import as_text
from service.worker.targets.base import AttemptResult, RunContext


@dataclass(frozen=True)
class QueueEntry:
    """One entry of a partition's run queue, as read or claimed by this worker."""

    partition: int
    entry_id: str
    run_id: str
    sid: str  # the aggregate the run belongs to: its schedule, or its workflow
    kind: str  # schedule | workflow

    @classmethod
    def parse(cls, partition: int, entry_id: Any, fields: dict[Any, Any]) -> QueueEntry:
        def field_(name: str, default: str = "") -> str:
            return as_text(fields.get(name.encode(), fields.get(name, default)))

        return cls(
            partition,
            as_text(entry_id),
            field_("run_id"),
            field_("sid"),
            field_("kind", "schedule"),
        )

    @property
    def schedule_id(self) -> str | None:
        return self.sid if self.kind == "schedule" else None

    @property
    def queued_ms(self) -> int:
        """When the entry was added (a stream id starts with Redis's clock in ms)."""
        return int(self.entry_id.split("-")[0])


@dataclass
class InFlight:
    """An attempt this worker started and has not finished: heartbeated and cancellable."""

    partition: int
    entry_id: str
    ctx: RunContext
    task: asyncio.Task[AttemptResult] | None = None
    terminated: bool = False


@dataclass
class WorkerStats:
    started: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    refused: int = 0
    reclaimed: int = 0
    # the most recent samples only: a worker runs for months
    start_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
