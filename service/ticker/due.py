"""What is due on a partition, with what planning it needs: the due read (due.lua),
the schedules' configs (cached per version) and their workflows' target types (cached
briefly). Reads only: the fire script re-checks everything it relies on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from service.clock import Clock
from service.domain.fire import DueSchedule
from service.domain.schedule import ScheduleConfig
from service.store import snapshots
from service.store.eventstore import as_text
from service.store.keys import Keyspace
from service.store.scripts import load_script

CONFIG_CACHE_SIZE = 200_000
TARGET_CACHE_S = 1.0


@dataclass(frozen=True)
class DueBatch:
    now: int
    earliest: int | None  # the earliest due time in the index (None: nothing is due ever)
    schedules: list[DueSchedule]
    last_due: str = ""  # the due ms (as the index has it) of the batch's last schedule

    @property
    def cursor(self) -> tuple[str, str]:
        """Where a batch read while this one is fired starts (after its last schedule)."""
        if not self.schedules:
            return ("", "")
        return (self.last_due, self.schedules[-1].schedule_id)


class DueReader:
    def __init__(self, redis: Redis, keys: Keyspace, clock: Clock | None, batch_size: int) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.batch_size = batch_size
        self._script = load_script(redis, "service.ticker", "due.lua")
        self._configs: dict[tuple[str, int], ScheduleConfig] = {}
        self._parsed: dict[bytes, ScheduleConfig] = {}  # each distinct config, parsed
        self._traces: dict[str, str | None] = {}  # trace of each schedule's last command
        self._targets: dict[str, str] = {}
        self._targets_read_at = 0.0

    async def read(self, partition: int, after: DueBatch | None = None) -> DueBatch:
        """Up to a batch of schedules due now, by the injected clock or else Redis's;
        strictly after the batch ``after`` (still being fired) in the due index."""
        now_arg = "" if self.clock is None else str(self.clock.now_ms())
        cursor = after.cursor if after is not None else ("", "")
        reply: Any = await self._script(
            keys=[self.keys.due(partition), self.keys.hwm(partition)],
            args=[now_arg, self.batch_size, self.keys.state_prefix(partition, "schedule"), *cursor],
        )
        now, earliest, last_due = int(reply[0]), int(reply[1]), as_text(reply[2])
        rows = reply[3:]
        due = [
            DueSchedule(
                as_text(rows[i]),
                int(rows[i + 1]),
                as_text(rows[i + 2]),
                int(rows[i + 3]),
                int(rows[i + 4]),
            )
            for i in range(0, len(rows), 5)
        ]
        return DueBatch(now, None if earliest < 0 else earliest, due, last_due)

    def config(self, due: DueSchedule) -> ScheduleConfig | None:
        return self._configs.get((due.schedule_id, due.version))

    def trace(self, schedule_id: str) -> str | None:
        return self._traces.get(schedule_id)

    async def load_configs(self, partition: int, due: list[DueSchedule]) -> None:
        """Read and parse the configs of schedule versions not seen before (one pipeline)."""
        missing = [d for d in due if d.version and (d.schedule_id, d.version) not in self._configs]
        if not missing:
            return
        if len(self._configs) + len(missing) > CONFIG_CACHE_SIZE:
            self._configs.clear()
            self._traces.clear()
            self._parsed.clear()
        async with self.redis.pipeline(transaction=False) as pipe:
            for d in missing:
                pipe.hmget(
                    self.keys.state(partition, "schedule", d.schedule_id),
                    ["version", "state", "traceparent"],
                )
            rows: list[Any] = await pipe.execute()
        for d, (version, snapshot, traceparent) in zip(missing, rows, strict=True):
            if snapshot is not None:
                stored = snapshots.expand("schedule", orjson.loads(snapshot))
                self._configs[(d.schedule_id, int(version))] = self._parse(stored["config"])
                self._traces[d.schedule_id] = as_text(traceparent) if traceparent else None

    def _parse(self, raw: dict[str, Any]) -> ScheduleConfig:
        """A config, parsed once for every schedule that has the same: a fleet's schedules
        often share theirs, and each parsed config is some kilobytes of objects."""
        key = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
        config = self._parsed.get(key)
        if config is None:
            config = self._parsed[key] = ScheduleConfig.model_validate(raw)
        return config

    async def targets(self, workflow_ids: set[str]) -> dict[str, str]:
        """The target type of each workflow ('none' runs complete at once), cached briefly:
        a workflow's target type changes rarely, and a fire reads it for every due time."""
        if time.monotonic() - self._targets_read_at > TARGET_CACHE_S:
            self._targets.clear()
            self._targets_read_at = time.monotonic()
        ordered = sorted(w for w in workflow_ids if w not in self._targets)
        if not ordered:
            return self._targets
        async with self.redis.pipeline(transaction=False) as pipe:
            for wid in ordered:
                pipe.hget(self.keys.state(self.keys.partition_of(wid), "workflow", wid), "state")
            raws: list[Any] = await pipe.execute()
        for wid, raw in zip(ordered, raws, strict=True):
            if raw is not None:
                stored = snapshots.expand("workflow", orjson.loads(raw))
                self._targets[wid] = stored["config"]["target"]["type"]
        return self._targets
