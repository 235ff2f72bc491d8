"""Closing runs: the step that frees a schedule for its next (held) run."""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
from redis.asyncio import Redis

from service.store.eventstore import as_text
from service.store.keys import Keyspace


class RunCloser:
    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        source = resources.files("service.store").joinpath("close_run.lua").read_text()
        self._script = redis.register_script(source)

    async def close(
        self,
        schedule_id: str,
        run_id: str,
        event_type: str,
        data: dict[str, Any],
        meta: dict[str, Any],
    ) -> tuple[bool, str | None]:
        """Record the run's end; return (accepted, id of the held run started, if any)."""
        p = self.keys.partition_of(schedule_id)
        keys = [
            self.keys.running(p, schedule_id),
            self.keys.buffer(p, schedule_id),
            self.keys.log(p),
            self.keys.queue(p),
            self.keys.aggregate_events(p, "schedule", schedule_id),
        ]
        args: list[Any] = [run_id, event_type, orjson.dumps(data), orjson.dumps(meta), schedule_id]
        reply = await self._script(keys=keys, args=args)
        if as_text(reply[0]) != "OK":
            return False, None
        started = as_text(reply[1])
        return True, started or None
