"""The run lifecycle script's adapter (runs.lua): start, finish, cancel, requeue, revive."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
from redis.asyncio import Redis

from service.domain.runs import RUN_EVENTS
from service.store.boundary import translate_redis_errors
from service.store.eventstore import as_text
from service.store.keys import Keyspace
from service.store.scripts import OP_TTL_MS, load_script, new_op

GROUP = "workers"
MAX_DELIVERIES = 5


@cache
def event_versions() -> bytes:
    """The schema version of every event runs.lua writes, as the script takes them."""
    return orjson.dumps({name: cls.version for name, cls in RUN_EVENTS.items()})


@dataclass(frozen=True)
class StartedAttempt:
    attempt: int
    token: str
    workflow_id: str
    trigger: dict[str, Any]
    nominal_time: str | None
    input: Any
    traceparent: str | None = None


class RunStore:
    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self._script = load_script(redis, "service.store", "runs.lua")

    @translate_redis_errors
    async def _call(
        self,
        p: int,
        sid: str,
        kind: str,
        run_id: str,
        action: str,
        meta: dict[str, Any],
        now_ms: int,
        *extra: Any,
        idem: str = "",
    ) -> list[str]:
        """One call of runs.lua; its operation token makes the client's retries of it safe."""
        keys = [
            self.keys.run(p, run_id),
            self.keys.queue(p),
            self.keys.log(p),
            self.keys.chain(p),
            self.keys.aggregate_events(p, kind, sid),
            self.keys.running(p, sid),
            self.keys.buffer(p, sid),
            self.keys.retries(p),
            self.keys.dead(p),
            self.keys.op(p, new_op()),
            self.keys.idem(p, "run:" + idem),
        ]
        args = [
            action,
            run_id,
            orjson.dumps(meta),
            now_ms,
            self.keys.run_prefix(p),
            GROUP,
            event_versions(),
            OP_TTL_MS,
            *extra,
        ]
        reply = await self._script(keys=keys, args=args)
        return [as_text(x) for x in reply]

    @translate_redis_errors
    async def locate(self, run_id: str) -> tuple[int, str, str] | None:
        """(partition, aggregate id, aggregate kind) of a run, or None if unknown."""
        for p in range(self.keys.partitions):
            sid, kind = await self.redis.hmget(self.keys.run(p, run_id), ["sid", "kind"])
            if sid is not None:
                return p, as_text(sid), as_text(kind) if kind else "schedule"
        return None

    async def start(
        self,
        p: int,
        sid: str,
        kind: str,
        run_id: str,
        entry_id: str,
        consumer: str,
        now_ms: int,
        now_rfc: str,
        max_deliveries: int = MAX_DELIVERIES,
    ) -> tuple[str, StartedAttempt | None]:
        reply = await self._call(
            p,
            sid,
            kind,
            run_id,
            "start",
            {"actor": consumer},
            now_ms,
            entry_id,
            consumer,
            max_deliveries,
            now_rfc,
        )
        if reply[0] != "OK":
            return reply[0], None
        trigger = orjson.loads(reply[4] or "{}")
        return "OK", StartedAttempt(
            attempt=int(reply[1]),
            token=reply[2],
            workflow_id=reply[3],
            trigger=trigger,
            nominal_time=reply[5] or None,
            input=orjson.loads(reply[6] or "null"),
            traceparent=reply[7] if len(reply) > 7 and reply[7] else None,
        )

    async def finish(
        self,
        p: int,
        sid: str,
        kind: str,
        run_id: str,
        *,
        outcome: str,
        meta: dict[str, Any],
        now_ms: int,
        token: str = "*",
        entry_id: str = "",
        attempt_data: dict[str, Any] | None = None,
        final_data: dict[str, Any] | None = None,
        retry_at_ms: int = 0,
    ) -> tuple[str, str | None]:
        """Record an attempt's end; returns (OK|STALE|DONE|GONE, id of a held run started)."""
        reply = await self._call(
            p,
            sid,
            kind,
            run_id,
            "finish",
            meta,
            now_ms,
            entry_id,
            token,
            outcome,
            orjson.dumps(attempt_data) if attempt_data is not None else "",
            orjson.dumps(final_data or {"run_id": run_id}),
            retry_at_ms,
        )
        started = reply[1] if len(reply) > 1 and reply[0] == "OK" else ""
        return reply[0], started or None

    async def cancel(
        self, p: int, sid: str, kind: str, run_id: str, *, terminate: bool, actor: str, now_ms: int
    ) -> str:
        reply = await self._call(
            p,
            sid,
            kind,
            run_id,
            "cancel",
            {"actor": actor},
            now_ms,
            "terminate" if terminate else "cancel",
            actor,
        )
        return reply[0]

    async def requeue_due(self, p: int, now_ms: int, limit: int = 500) -> int:
        reply = await self._call(p, "", "schedule", "", "requeue", {}, now_ms, limit)
        return int(reply[1])

    async def revive(
        self, p: int, sid: str, kind: str, run_id: str, *, actor: str, now_ms: int
    ) -> str:
        reply = await self._call(p, sid, kind, run_id, "revive", {"actor": actor}, now_ms, actor)
        return reply[0] if reply[0] == "OK" else f"{reply[0]}:{reply[1] if len(reply) > 1 else ''}"

    async def create(
        self,
        workflow_id: str,
        run_id: str,
        trigger: dict[str, Any],
        run_input: Any,
        *,
        meta: dict[str, Any],
        now_ms: int,
        idempotency_key: str = "",
        fingerprint: str = "",
    ) -> tuple[str, str]:
        """Queue a run of a workflow with no schedule; returns (OK|DUP|REUSED, run id)."""
        p = self.keys.partition_of(workflow_id)
        reply = await self._call(
            p,
            workflow_id,
            "workflow",
            run_id,
            "create",
            meta,
            now_ms,
            workflow_id,
            orjson.dumps(trigger),
            orjson.dumps(run_input),
            (fingerprint or "-") if idempotency_key else "",
            idem=idempotency_key,
        )
        return reply[0], reply[1] if len(reply) > 1 else ""
