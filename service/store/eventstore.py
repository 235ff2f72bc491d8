"""The event store on Redis Streams: append (one Lua script) and read.

Each partition has one log stream. An append writes the events of one aggregate,
its write-model snapshot (compacted, ``snapshots.py``) and an idempotency record in
one script call; a read decodes entries into ``StoredEvent`` and upcasts old payload
versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis

from service import telemetry
from service.domain.events import Event
from service.domain.upcasters import upcast
from service.errors import IdempotencyKeyReused, VersionMismatch
from service.store import snapshots
from service.store.boundary import translate_redis_errors
from service.store.keys import Keyspace
from service.store.scripts import call_pipelined, load_script

ANY_VERSION = -1


@dataclass(frozen=True)
class StoredEvent:
    """One log entry: the envelope of DESIGN.md §4 plus where it sits in the log."""

    position: str
    partition: int
    type: str
    v: int
    sid: str
    data: dict[str, Any]
    meta: dict[str, Any]

    @property
    def at(self) -> int:
        """Append time in epoch ms (Redis's clock, from the stream id)."""
        return int(self.position.split("-", 1)[0])


@dataclass(frozen=True)
class Idempotency:
    """The key a write is recorded under, and what the request looked like."""

    key: str
    fingerprint: str
    ttl_ms: int


@dataclass(frozen=True)
class PendingAppend:
    """One aggregate's append, as ``EventStore.append`` takes it (for ``append_many``)."""

    kind: str
    aggregate_id: str
    events: list[Event]
    meta: dict[str, Any]
    expected_version: int
    snapshot: dict[str, Any]
    idempotency: Idempotency
    status: str = ""
    due: str = ""
    now_ms: int | None = None


@dataclass(frozen=True)
class AppendResult:
    version: int
    positions: list[str]
    duplicate: bool = False

    @property
    def last_position(self) -> str | None:
        return self.positions[-1] if self.positions else None


Position = tuple[int, int]
"""A log position as (ms, seq), which sorts in log order."""


def parse_position(position: str) -> Position:
    ms, _, seq = position.partition("-")
    return int(ms), int(seq or 0)


def format_position(position: Position) -> str:
    return f"{position[0]}-{position[1]}"


def following(position: Position) -> Position:
    """The smallest position after ``position``."""
    return position[0], position[1] + 1


def decode_entry(partition: int, entry_id: bytes | str, fields: dict[Any, Any]) -> StoredEvent:
    def text(name: str) -> str:
        raw = fields.get(name.encode(), fields.get(name))
        if raw is None:
            return ""
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    position = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    event_type = text("type")
    version, data = upcast(event_type, int(text("v") or 1), orjson.loads(text("data") or "{}"))
    return StoredEvent(
        position=position,
        partition=partition,
        type=event_type,
        v=version,
        sid=text("sid"),
        data=data,
        meta=orjson.loads(text("meta") or "{}"),
    )


class ArchivedEvents(Protocol):
    """Finds events an archive run trimmed from the log (service/store/archive_reader.py);
    raises when they are archived where they cannot be read."""

    async def by_id(self, partition: int, ids: list[str]) -> dict[str, StoredEvent]: ...

    async def after(self, partition: int, after: str, count: int) -> list[StoredEvent]:
        """Up to ``count`` archived events after ``after`` that the log no longer holds."""
        ...


class EventStore:
    def __init__(self, redis: Redis, keys: Keyspace, archive: ArchivedEvents | None = None) -> None:
        self.redis = redis
        self.keys = keys
        # finds events an archive run trimmed from the log (where the run recorded it)
        self.archive = archive
        self._append = load_script(redis, "service.store", "append.lua")
        self._load_many = load_script(redis, "service.store", "load_many.lua")

    @translate_redis_errors
    async def load(self, kind: str, aggregate_id: str) -> tuple[dict[str, Any] | None, int]:
        """The aggregate's write-model snapshot and version (None, 0 if it never existed)."""
        p = self.keys.partition_of(aggregate_id)
        state, version, status = await self.redis.hmget(
            self.keys.state(p, kind, aggregate_id), ["state", "version", "status"]
        )
        return _snapshot(kind, state, version, status)

    @translate_redis_errors
    async def load_many(
        self, kind: str, aggregate_ids: Sequence[str], chunk: int = 1000
    ) -> list[tuple[dict[str, Any] | None, int]]:
        """``load`` of many aggregates, in order: one script call per partition and
        ``chunk`` aggregates (load_many.lua)."""
        by_partition: dict[int, list[int]] = {}
        for index, aggregate_id in enumerate(aggregate_ids):
            by_partition.setdefault(self.keys.partition_of(aggregate_id), []).append(index)
        out: list[tuple[dict[str, Any] | None, int]] = [(None, 0)] * len(aggregate_ids)
        for p, indexes in by_partition.items():
            for start in range(0, len(indexes), chunk):
                part = indexes[start : start + chunk]
                keys = [self.keys.state(p, kind, aggregate_ids[i]) for i in part]
                replies: list[Any] = await self._load_many(keys=keys)
                for i, reply in zip(part, replies, strict=True):
                    out[i] = _snapshot(kind, *reply)
        return out

    @translate_redis_errors
    async def aggregate_ids(self, kind: str) -> list[str]:
        """The id of every aggregate of ``kind`` that has a write model (deleted ones too)."""
        ids: list[str] = []
        for p in range(self.keys.partitions):
            prefix = self.keys.state_prefix(p, kind)
            async for key in self.redis.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
                ids.append(as_text(key)[len(prefix) :])
        return ids

    @translate_redis_errors
    async def append(
        self,
        kind: str,
        aggregate_id: str,
        events: list[Event],
        *,
        meta: dict[str, Any],
        expected_version: int,
        snapshot: dict[str, Any],
        idempotency: Idempotency,
        status: str = "",
        due: str = "",
        now_ms: int | None = None,
    ) -> AppendResult:
        """Append ``events`` if the aggregate is at ``expected_version`` (or ANY_VERSION).

        Raises VersionMismatch on a concurrent change and IdempotencyKeyReused when
        the key was used for another request. A repeated call returns the first
        call's result with ``duplicate=True`` and appends nothing.
        """
        attributes = (
            {
                "cronstream.event_types": ",".join(e.type_name() for e in events),
                "cronstream.aggregate_id": aggregate_id,
                "db.system": "redis",
            }
            if telemetry.tracing()
            else None
        )
        with telemetry.span("cronstream.append", attributes=attributes) as current:
            if current is not None:
                meta = {**meta, "traceparent": telemetry.current_traceparent()}
            result = await self._append_events(
                kind,
                aggregate_id,
                events,
                meta=meta,
                expected_version=expected_version,
                snapshot=snapshot,
                idempotency=idempotency,
                status=status,
                due=due,
                now_ms=now_ms,
            )
            if current is not None:
                current.set_attribute("cronstream.log_position", result.last_position or "")
            return result

    async def _append_events(
        self,
        kind: str,
        aggregate_id: str,
        events: list[Event],
        *,
        meta: dict[str, Any],
        expected_version: int,
        snapshot: dict[str, Any],
        idempotency: Idempotency,
        status: str,
        due: str,
        now_ms: int | None,
    ) -> AppendResult:
        keys, args = self._script_call(
            PendingAppend(
                kind,
                aggregate_id,
                events,
                meta,
                expected_version,
                snapshot,
                idempotency,
                status,
                due,
                now_ms,
            )
        )
        reply = await self._append(keys=keys, args=args)
        return _append_result(reply, aggregate_id, expected_version, idempotency)

    @translate_redis_errors
    async def append_many(
        self, appends: Sequence[PendingAppend], chunk: int = 500
    ) -> list[AppendResult | VersionMismatch | IdempotencyKeyReused]:
        """Many appends, ``chunk`` to a pipelined round trip: each is one atomic,
        idempotent append (as ``append``); together they are not atomic. The result of
        each in order, a refused one as its error (a concurrent change, a reused key)."""
        results: list[AppendResult | VersionMismatch | IdempotencyKeyReused] = []
        for start in range(0, len(appends), chunk):
            part = appends[start : start + chunk]
            replies = await call_pipelined(
                self.redis, self._append, [self._script_call(pending) for pending in part]
            )
            for pending, reply in zip(part, replies, strict=True):
                try:
                    results.append(
                        _append_result(
                            reply,
                            pending.aggregate_id,
                            pending.expected_version,
                            pending.idempotency,
                        )
                    )
                except (VersionMismatch, IdempotencyKeyReused) as exc:
                    results.append(exc)
        return results

    def _script_call(self, pending: PendingAppend) -> tuple[list[str], list[Any]]:
        """The keys and arguments of append.lua for one append."""
        kind, aggregate_id, events = pending.kind, pending.aggregate_id, pending.events
        idempotency, now_ms = pending.idempotency, pending.now_ms
        p = self.keys.partition_of(aggregate_id)
        meta_json = orjson.dumps(pending.meta)
        args: list[Any] = [
            pending.expected_version,
            idempotency.fingerprint,
            idempotency.ttl_ms,
            orjson.dumps(snapshots.compact(kind, pending.snapshot)),
            aggregate_id,
            pending.due,
            pending.status,
            "" if now_ms is None else now_ms,
            len(events),
        ]
        for event in events:
            args += [event.type_name(), event.version, orjson.dumps(event.data()), meta_json]
        keys = [
            self.keys.log(p),
            self.keys.state(p, kind, aggregate_id),
            self.keys.idem(p, idempotency.key),
            self.keys.aggregate_events(p, kind, aggregate_id),
            self.keys.due(p),
            self.keys.hwm(p),
            self.keys.chain(p),
            self.keys.wake(p),
        ]
        return keys, args

    @translate_redis_errors
    async def idempotency_record(self, aggregate_id: str, key: str) -> dict[str, str] | None:
        p = self.keys.partition_of(aggregate_id)
        raw = await self.redis.hgetall(self.keys.idem(p, key))
        if not raw:
            return None
        return {as_text(k): as_text(v) for k, v in raw.items()}

    @translate_redis_errors
    async def save_response(self, aggregate_id: str, key: str, status: int, body: bytes) -> None:
        """Keep the first response to a keyed request, so a retry gets the same answer."""
        p = self.keys.partition_of(aggregate_id)
        idem = self.keys.idem(p, key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(idem, "response_status", status)
            pipe.hsetnx(idem, "response_body", body)
            await pipe.execute()

    @translate_redis_errors
    async def read(self, partition: int, after: str, count: int) -> list[StoredEvent]:
        """Up to ``count`` events of a partition strictly after position ``after``."""
        start = "-" if after in ("", "0", "0-0") else f"({after}"
        entries: Any = await self.redis.xrange(self.keys.log(partition), min=start, count=count)
        events = [decode_entry(partition, eid, fields) for eid, fields in entries]
        if self.archive is not None:
            archived = await self.archive.after(partition, after, count)
            if archived:  # they all come before what the log still holds
                events = (archived + events)[:count]
        return events

    @translate_redis_errors
    async def read_aggregate(
        self, kind: str, aggregate_id: str, offset: int = 0, limit: int = 100
    ) -> list[StoredEvent]:
        """The aggregate's events in order, through its event index."""
        p = self.keys.partition_of(aggregate_id)
        ids = await self.redis.lrange(
            self.keys.aggregate_events(p, kind, aggregate_id), offset, offset + limit - 1
        )
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for eid in ids:
                pipe.xrange(self.keys.log(p), min=eid, max=eid, count=1)
            found = await pipe.execute()
        entries_per_id: list[Any] = found
        by_id: dict[str, StoredEvent] = {}
        for entries in entries_per_id:
            for eid, fields in entries:
                event = decode_entry(p, eid, fields)
                by_id[event.position] = event
        wanted = [as_text(i) for i in ids]
        missing = [i for i in wanted if i not in by_id]
        if missing and self.archive is not None:
            by_id.update(await self.archive.by_id(p, missing))  # trimmed into the archive
        return [by_id[i] for i in wanted if i in by_id]

    @translate_redis_errors
    async def count_aggregate(self, kind: str, aggregate_id: str) -> int:
        p = self.keys.partition_of(aggregate_id)
        return int(await self.redis.llen(self.keys.aggregate_events(p, kind, aggregate_id)))

    @translate_redis_errors
    async def last_position(self, partition: int) -> str | None:
        entries = await self.redis.xrevrange(self.keys.log(partition), count=1)
        if not entries:
            return None
        eid = entries[0][0]
        return eid.decode() if isinstance(eid, bytes) else str(eid)


def _snapshot(
    kind: str, state: Any, version: Any, status: Any
) -> tuple[dict[str, Any] | None, int]:
    if state is None:
        return None, 0
    snapshot = snapshots.expand(kind, orjson.loads(state))
    if status and as_text(status) in ("active", "paused", "completed"):
        # the fire script completes a schedule by setting this field alone
        snapshot["status"] = as_text(status)
    return snapshot, int(version or 0)


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _append_result(
    reply: Any, aggregate_id: str, expected_version: int, idempotency: Idempotency
) -> AppendResult:
    outcome = as_text(reply[0])
    if outcome == "REUSED":
        raise IdempotencyKeyReused(idempotency.key)
    if outcome == "CONFLICT":
        raise VersionMismatch(aggregate_id, expected_version, int(as_text(reply[1])))
    ids = [i for i in as_text(reply[2]).split(",") if i]
    return AppendResult(int(as_text(reply[1])), ids, duplicate=outcome == "DUP")


def as_text(value: Any) -> str:
    """A Redis reply (bytes or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)
