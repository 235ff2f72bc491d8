"""Drop every view and rebuild it from the log alone."""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis

from projections.projector import Projector
from service.store.keys import Keyspace


@dataclass(frozen=True)
class RebuildReport:
    partitions: int
    dropped_keys: int
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


async def rebuild(redis: Redis, keys: Keyspace, namespace: str = "view") -> RebuildReport:
    reset = redis.register_script(resources.files("projections").joinpath("reset.lua").read_text())
    projector = Projector(redis, keys, namespace=namespace)
    started = time.perf_counter()
    dropped = 0
    events = 0
    for p in range(keys.partitions):
        pattern = keys.view_prefix(p, namespace).replace("[", "\\[") + "*"
        dropped += int(await reset(keys=[keys.checkpoint(p, projector.name)], args=[pattern]))
        events += await projector.catch_up(p)
    return RebuildReport(keys.partitions, dropped, events, time.perf_counter() - started)
