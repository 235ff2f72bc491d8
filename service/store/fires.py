"""The fire script's adapter: a domain ``FireRequest`` in, the script's reply out.

The ticker's requests run in batches, one script call deciding hundreds of them, and
carry no operation token (the high-water mark makes a repeated call append nothing, and
the ticker's path stays lean); every other request runs singly with a fresh token, so
the client's retry of a call whose reply was lost answers the first reply and appends
nothing.
"""

from __future__ import annotations

from functools import cache
from typing import Any, NamedTuple

import orjson
from redis.asyncio import Redis

from service.domain.fire import (
    NO_TARGET,
    FireDropped,
    FireMode,
    FireRequest,
    FireSkipped,
    FiresMissed,
    Missed,
    ScheduleCompleted,
    ScheduleFired,
)
from service.domain.runs import RunCancelRequested, RunQueued, RunSucceeded
from service.domain.timeutil import to_rfc3339
from service.store.eventstore import as_text
from service.store.keys import Keyspace
from service.store.scripts import OP_TTL_MS, call_pipelined, new_op, source

IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
"""How long a trigger's Idempotency-Key answers with its first run."""

FIRE_EVENTS = (
    ScheduleFired,
    FireSkipped,
    FireDropped,
    FiresMissed,
    ScheduleCompleted,
    RunQueued,
    RunSucceeded,
    RunCancelRequested,
)
"""The events the script appends."""

BATCH_MAX = 500
BATCH_FIRES_MAX = 1000
"""The most ticker requests, and fires, one call decides (a request with more fires has
a call of its own): the script holds Redis while it runs (about 40 us a fire on a
2-core VM), so a larger batch, such as a backlog's catch-up, would stall every other
client."""
SCHEDULE_RUNS_FROM = 12
"""A ticker request's first run hash key: after its 11 keys (see fire.lua)."""


@cache
def fire_source() -> str:
    """The fire script: the event versions (from the event models), the shared prelude,
    then fire.lua. The versions are joined in at load rather than passed with each
    call: decoding them costs the ticker's every call a tenth of the script's time."""
    versions = ", ".join(f"{cls.type_name()} = '{cls.version}'" for cls in FIRE_EVENTS)
    return f"local versions = {{{versions}}}\n" + source("service.store", "fire.lua")


class FireReply(NamedTuple):
    """OK | FENCED (the lease is lost) | STALE (planned on an older schedule or mark) |
    INACTIVE | GONE (no such schedule) | DUP (an Idempotency-Key's repeat: ``run_id`` is
    the first run) | REUSED (a key reused with another request)."""

    status: str
    fired: int = 0
    skipped: int = 0
    dropped: int = 0
    completed: bool = False
    run_id: str = ""
    tail: str = ""  # the last run of the request's times, which a next chunk follows


class FireScript:
    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self._script = redis.register_script(fire_source())
        self._partitions: dict[int, tuple[str, ...]] = {}

    async def run(self, request: FireRequest) -> FireReply:
        """One request; a trigger's or backfill's with an operation token of its own."""
        op = "" if request.mode is FireMode.SCHEDULE else new_op()
        keys, args = self._call(request, op)
        return _parse(await self._script(keys=keys, args=args))

    async def run_many(self, requests: list[FireRequest]) -> list[FireReply]:
        """The ticker's requests: batch calls per partition (see ``BATCH_FIRES_MAX``),
        the calls in one pipeline. A fenced batch answers FENCED for each request."""
        if not requests:
            return []
        batches: dict[int, list[int]] = {}
        for i, request in enumerate(requests):
            batches.setdefault(self.keys.partition_of(request.schedule_id), []).append(i)
        calls = [
            (p, chunk) for p, indexes in batches.items() for chunk in _chunks(requests, indexes)
        ]
        raws = await call_pipelined(
            self.redis,
            self._script,
            [self._batch_call(p, [requests[i] for i in indexes]) for p, indexes in calls],
        )
        replies: list[FireReply] = [FireReply("FENCED")] * len(requests)
        for (_, indexes), raw in zip(calls, raws, strict=True):
            if as_text(raw[0]) == "BATCH":
                for i, one in zip(indexes, raw[1:], strict=True):
                    replies[i] = _parse(one)
        return replies

    def _batch_call(self, p: int, requests: list[FireRequest]) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of a batch call (see the end of fire.lua)."""
        fence = requests[0].fence
        if fence is None or any(r.fence != fence for r in requests):
            raise ValueError("a batch holds ticker requests under one lease")
        lease, epoch, hwm, due, log, chain, queue, run_prefix = self._partition_keys(p)
        k = self.keys
        args: list[Any] = [
            "batch",
            fence.owner,
            str(fence.epoch),
            k.state_prefix(p, "schedule"),
            k.running(p, ""),
            k.buffer(p, ""),
            k.aggregate_events(p, "schedule", ""),
            run_prefix,
        ]
        for r in requests:
            args.append(orjson.dumps([_header(r, SCHEDULE_RUNS_FROM, run_prefix), *_fires(r)]))
        return [lease, epoch, hwm, due, log, chain, queue], args

    def _partition_keys(self, p: int) -> tuple[str, ...]:
        """KEYS[1], [2], [4] to [8] (a partition's own keys), then the run hash prefix."""
        found = self._partitions.get(p)
        if found is None:
            k = self.keys
            found = self._partitions[p] = (
                *(k.lease(p), k.epoch(p), k.hwm(p), k.due(p), k.log(p), k.chain(p), k.queue(p)),
                k.run_prefix(p),
            )
        return found

    def _call(self, r: FireRequest, op: str) -> tuple[list[str], list[Any]]:
        sid = r.schedule_id
        p = self.keys.partition_of(sid)
        lease, epoch, hwm, due, log, chain, queue, run_prefix = self._partition_keys(p)
        keys = [
            lease,
            epoch,
            self.keys.state(p, "schedule", sid),
            hwm,
            due,
            log,
            chain,
            queue,
            self.keys.running(p, sid),
            self.keys.buffer(p, sid),
            self.keys.aggregate_events(p, "schedule", sid),
        ]
        if op:
            keys.append(self.keys.op(p, op))
        if r.mode is FireMode.BACKFILL:
            keys.append(self.keys.backfilled(p, sid))
            if r.after:
                keys.append(self.keys.run(p, r.after))
        elif r.dedupe_key:
            keys.append(self.keys.idem(p, "fire:" + r.dedupe_key))
        runs_from = len(keys) + 1
        if r.target != NO_TARGET:  # a run of no target succeeds at once: it has no hash
            keys += [run_prefix + fire.run_id for fire in r.fires]
        return keys, [orjson.dumps(_header(r, runs_from, run_prefix)), *_fires(r)]


def _fires(r: FireRequest) -> list[str]:
    """Per fire: nominal ms, nominal (RFC 3339), run id, fire id (and its traceparent)."""
    out: list[str] = []
    traces = r.traces
    for i, fire in enumerate(r.fires):
        out += [str(fire.nominal), to_rfc3339(fire.nominal), fire.run_id, fire.fire_id]
        if traces:
            out.append(traces[i] if i < len(traces) else "")
    return out


def _chunks(requests: list[FireRequest], indexes: list[int]) -> list[list[int]]:
    """``indexes`` in calls of at most BATCH_MAX requests and BATCH_FIRES_MAX fires."""
    chunks: list[list[int]] = []
    chunk: list[int] = []
    fires = 0
    for i in indexes:
        count = len(requests[i].fires)
        if chunk and (len(chunk) >= BATCH_MAX or fires + count > BATCH_FIRES_MAX):
            chunks.append(chunk)
            chunk, fires = [], 0
        chunk.append(i)
        fires += count
    if chunk:
        chunks.append(chunk)
    return chunks


def _header(r: FireRequest, runs_from: int, run_prefix: str) -> dict[str, Any]:
    header = {
        "mode": r.mode,
        "sid": r.schedule_id,
        "workflow_id": r.workflow_id,
        "target": r.target,
        "while_running": r.overlap.while_running,
        "bound": r.overlap.bound,
        "cancel": r.overlap.cancel,
        "input": orjson.dumps(r.input).decode(),
        "meta": orjson.dumps(r.meta).decode(),
        "fire_time": to_rfc3339(r.fire_time),
        "runs_from": runs_from,
        "run_prefix": run_prefix,
        "traced": bool(r.traces),
    }
    if r.fence is None:  # a trigger or a backfill
        header |= {
            "source": r.source,
            "idempotency_key": bool(r.dedupe_key),
            "fingerprint": r.fingerprint or "-",
            "dedupe_ttl": IDEMPOTENCY_TTL_MS,
            "op_ttl": OP_TTL_MS,
            "after": r.after,
        }
        return header
    header |= {
        "owner": r.fence.owner,
        "epoch": str(r.fence.epoch),
        "version": str(r.version),
        "hwm": str(r.hwm),
        "new_hwm": str(r.new_hwm),
        "next_due": "" if r.next_due is None else str(r.next_due),
        "missed": "" if r.missed is None else _missed(r.missed),
        "max_actions": "" if r.max_actions is None else str(r.max_actions),
    }
    return header


def _missed(missed: Missed) -> str:
    """The FiresMissed event's data: how many, the range, and what decided it."""
    event = FiresMissed(
        count=missed.count,
        first=missed.first,
        last=missed.last,
        reason="catchup",
        policy=missed.policy,
        window_start=missed.window_start,
        catchup_max=missed.catchup_max,
    )
    return orjson.dumps(event.data()).decode()


def _parse(reply: Any) -> FireReply:
    status = as_text(reply[0])
    if status == "OK":
        fired, skipped, dropped, completed = (int(x) for x in reply[1:5])
        tail = as_text(reply[5]) if len(reply) > 5 else ""
        return FireReply(status, fired, skipped, dropped, bool(completed), tail=tail)
    if status == "DUP":
        return FireReply(status, run_id=as_text(reply[1]))
    return FireReply(status)
