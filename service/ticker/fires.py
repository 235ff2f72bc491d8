"""The fire script's adapter: one request per schedule, run singly or pipelined."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson
from redis.asyncio import Redis

from service.domain.firing import Missed
from service.domain.timeutil import to_rfc3339
from service.store.eventstore import as_text
from service.store.keys import Keyspace

MANUAL_KEY_TTL_MS = 24 * 3600 * 1000


@dataclass
class FireRequest:
    """Everything fire.lua needs to fire (or skip) one schedule's nominal times."""

    schedule_id: str
    mode: str  # schedule | manual | api | backfill
    fire_time: str
    meta: dict[str, Any]
    token: str = ""
    epoch: int = 0
    version: int = 0
    hwm: int = 0
    new_hwm: int = 0
    next_due: int | None = None
    workflow_id: str = ""
    target: str = "http"
    overlap: str = "skip"
    buffer_max: int = 100
    input: Any = None
    source: str = ""
    dedupe_key: str = ""
    fingerprint: str = ""
    missed: Missed | None = None
    max_actions: int | None = None
    fires: list[tuple[int | None, str]] = field(default_factory=list)  # (nominal, run id)
    traces: list[str] = field(default_factory=list)  # traceparent of each fire's span


class FireScript:
    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        source = resources.files("service.ticker").joinpath("fire.lua").read_text()
        self._script = redis.register_script(source)

    def _call(self, r: FireRequest) -> tuple[list[str], list[Any]]:
        p = self.keys.partition_of(r.schedule_id)
        sid = r.schedule_id
        if r.mode == "backfill":
            dedupe = self.keys.backfilled(p, sid)
        elif r.mode in ("manual", "api"):
            dedupe = self.keys.idem(p, "fire:" + (r.dedupe_key or uuid.uuid4().hex))
        else:
            dedupe = self.keys.idem(p, "fire:unused")
        keys = [
            self.keys.lease(p),
            self.keys.epoch(p),
            self.keys.state(p, "schedule", sid),
            self.keys.hwm(p),
            self.keys.due(p),
            self.keys.log(p),
            self.keys.queue(p),
            self.keys.running(p, sid),
            self.keys.buffer(p, sid),
            self.keys.aggregate_events(p, "schedule", sid),
            dedupe,
        ]
        missed = r.missed
        header = {
            "mode": r.mode,
            "token": r.token,
            "epoch": str(r.epoch),
            "version": str(r.version),
            "hwm": str(r.hwm),
            "new_hwm": str(r.new_hwm),
            "next_due": "" if r.next_due is None else str(r.next_due),
            "sid": sid,
            "workflow_id": r.workflow_id,
            "target": r.target,
            "overlap": r.overlap,
            "buffer_max": str(r.buffer_max),
            "input": orjson.dumps(r.input).decode(),
            "meta": orjson.dumps(r.meta).decode(),
            "fire_time": r.fire_time,
            "source": r.source,
            "fingerprint": r.fingerprint or "-",
            "dedupe_ttl": str(MANUAL_KEY_TTL_MS),
            "missed_count": str(missed.count if missed else 0),
            "missed_first": to_rfc3339(missed.first) if missed else "",
            "missed_last": to_rfc3339(missed.last) if missed else "",
            "max_actions": "" if r.max_actions is None else str(r.max_actions),
            "run_prefix": self.keys.run_prefix(p),
        }
        args: list[Any] = [orjson.dumps(header)]
        for i, (nominal, run_id) in enumerate(r.fires):
            trace = r.traces[i] if i < len(r.traces) else ""
            if nominal is None:
                args += ["now", "", run_id, trace]
            else:
                args += [nominal, to_rfc3339(nominal), run_id, trace]
        return keys, args

    async def run(self, request: FireRequest) -> tuple[str, list[Any]]:
        keys, args = self._call(request)
        return _parse(await self._script(keys=keys, args=args))

    async def run_many(self, requests: list[FireRequest]) -> list[tuple[str, list[Any]]]:
        if not requests:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for request in requests:
                keys, args = self._call(request)
                await self._script(keys=keys, args=args, client=pipe)
            replies = await pipe.execute()
        return [_parse(reply) for reply in replies]


def _parse(reply: Any) -> tuple[str, list[Any]]:
    outcome = as_text(reply[0])
    rest = [int(x) if isinstance(x, int) else as_text(x) for x in reply[1:]]
    return outcome, rest
