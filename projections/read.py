"""Queries over the views, for the API. Reads only; never writes a view."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from projections import records, schedules, workflows
from service.domain.namespaces import DEFAULT, SEPARATOR, namespace_of
from service.domain.policies import ScheduleStatus
from service.store.boundary import translate_redis_errors
from service.store.keys import Keyspace

Record = dict[str, Any]
SCAN_BOUND = 10_000
HOP_BOUND = 1_000
"""How many batches one page of ``default`` ids may read past other namespaces' ids."""
BARE_BATCH = 128
_AFTER_SEPARATOR = chr(ord(SEPARATOR) + 1)
NAMESPACE_BOUND = 100_000
"""How many namespaces one partition's count may step through."""
STATUSES = tuple(str(s) for s in ScheduleStatus)


@dataclass(frozen=True)
class ScheduleFilter:
    workflow_id: str | None = None
    status: str | None = None
    tag: str | None = None

    def index(self) -> str:
        if self.tag:
            return f"schedules:tag:{self.tag}"
        if self.workflow_id:
            return f"schedules:workflow:{self.workflow_id}"
        if self.status:
            return f"schedules:status:{self.status}"
        return "schedules"

    def matches(self, record: Record) -> bool:
        return (
            (self.workflow_id is None or record["workflow_id"] == self.workflow_id)
            and (self.status is None or record["status"] == self.status)
            and (self.tag is None or self.tag in record.get("tags", []))
        )


@dataclass(frozen=True)
class RunFilter:
    schedule_id: str | None = None
    workflow_id: str | None = None
    status: str | None = None
    trigger: str | None = None
    namespace: str | None = None

    def index(self) -> str:
        if self.schedule_id:
            return f"runs:schedule:{self.schedule_id}"
        if self.status:
            return f"runs:status:{self.status}"
        if self.workflow_id:
            return f"runs:workflow:{self.workflow_id}"
        if self.trigger:
            return f"runs:trigger:{self.trigger}"
        return "runs"

    def matches(self, record: Record) -> bool:
        return (
            (self.schedule_id is None or record.get("schedule_id") == self.schedule_id)
            and (self.workflow_id is None or record["workflow_id"] == self.workflow_id)
            and (self.status is None or record["status"] == self.status)
            and (self.trigger is None or record["trigger"]["type"] == self.trigger)
            and (self.namespace is None or namespace_of(record["workflow_id"]) == self.namespace)
        )


def _member(record: Record) -> str:
    return f"{record['queued_at']:013d}:{record['id']}"


class ViewReader:
    def __init__(self, redis: Redis, keys: Keyspace, namespace: str = "view") -> None:
        self.redis = redis
        self.keys = keys
        self.namespace = namespace

    def _key(self, p: int, name: str) -> str:
        return self.keys.view(p, name, self.namespace)

    async def _record(self, p: int, name: str) -> Record | None:
        raw = await self.redis.get(self._key(p, name))
        if raw is None:
            return None
        record = records.decode(name, raw)
        return None if record.get("deleted") else record

    @translate_redis_errors
    async def schedule(self, schedule_id: str) -> Record | None:
        p = self.keys.partition_of(schedule_id)
        return await self._record(p, schedules.record_name(schedule_id))

    @translate_redis_errors
    async def workflow(self, workflow_id: str) -> Record | None:
        p = self.keys.partition_of(workflow_id)
        return await self._record(p, workflows.record_name(workflow_id))

    async def _ids(
        self, index: str, after: str | None, limit: int, prefix: str | None = None
    ) -> list[str]:
        """Ids in an index across partitions, in id order, after ``after``; only those
        starting with ``prefix`` ("": the bare ids of ``default``; None: all)."""
        per_partition = []
        for p in range(self.keys.partitions):
            key = self._key(p, index)
            if prefix is None:
                low = f"({after}" if after else "-"
                per_partition.append(await self._lex(key, low, "+", limit))
            elif prefix:
                low = f"({after}" if after else f"[{prefix}"
                high = f"({prefix[:-1]}{_AFTER_SEPARATOR}"
                per_partition.append(await self._lex(key, low, high, limit))
            else:
                per_partition.append(await self._bare_ids(key, after, limit))
        return list(heapq.merge(*per_partition))[:limit]

    async def _lex(self, key: str, low: str, high: str, limit: int) -> list[str]:
        raw = await self.redis.zrangebylex(key, low, high, start=0, num=limit)
        return [m.decode() if isinstance(m, bytes) else m for m in raw]

    async def _bare_ids(self, key: str, after: str | None, limit: int) -> list[str]:
        """Ids without a namespace in ``key`` after ``after``, read in batches that skip the
        others' ids; a batch that ends inside a namespace's run of ids (``NS/…``, which sort
        together) steps past the whole run at once."""
        size = max(limit, BARE_BATCH)
        low = f"({after}" if after else "-"
        found: list[str] = []
        for _ in range(HOP_BOUND):
            batch = await self._lex(key, low, "+", size)
            found += [member for member in batch if SEPARATOR not in member]
            if len(found) >= limit or len(batch) < size:
                break
            last = batch[-1]
            owner, sep, _ = last.partition(SEPARATOR)
            low = f"[{owner}{_AFTER_SEPARATOR}" if sep else f"({last}"
        return found[:limit]

    async def _records(
        self, prefix: str, ids: list[str], partitions: list[int] | None = None
    ) -> list[Record]:
        """The live records of ``ids``: each in its own id's partition, or in the one
        ``partitions`` names (a run's record is kept in its schedule's or workflow's)."""
        if not ids:
            return []
        where = partitions or [self.keys.partition_of(ident) for ident in ids]
        async with self.redis.pipeline(transaction=False) as pipe:
            for ident, p in zip(ids, where, strict=True):
                pipe.get(self._key(p, f"{prefix}:{ident}"))
            raws = await pipe.execute()
        out = []
        for ident, raw in zip(ids, raws, strict=True):
            if raw is not None:
                record = records.decode(f"{prefix}:{ident}", raw)
                if not record.get("deleted"):
                    out.append(record)
        return out

    @translate_redis_errors
    async def list_schedules(
        self, where: ScheduleFilter, after: str | None, limit: int, prefix: str | None = None
    ) -> tuple[list[Record], str | None]:
        """A page of schedules in id order, and the cursor of the next page (or None)."""
        found: list[Record] = []
        cursor = after
        scanned = 0
        while len(found) < limit and scanned < SCAN_BOUND:
            ids = await self._ids(where.index(), cursor, limit, prefix)
            if not ids:
                return found, None
            scanned += len(ids)
            for record in await self._records("schedule", ids):
                if where.matches(record) and len(found) < limit:
                    found.append(record)
            cursor = ids[-1] if len(found) < limit else found[-1]["id"]
        more = await self._ids(where.index(), found[-1]["id"], 1, prefix) if found else []
        return found, (found[-1]["id"] if found and more else None)

    @translate_redis_errors
    async def list_workflows(
        self, after: str | None, limit: int, prefix: str | None = None
    ) -> tuple[list[Record], str | None]:
        ids = await self._ids("workflows", after, limit + 1, prefix)
        records = await self._records("workflow", ids[:limit])
        return records, (ids[limit - 1] if len(ids) > limit else None)

    @translate_redis_errors
    async def run(self, run_id: str) -> Record | None:
        for p in range(self.keys.partitions):
            record = await self._record(p, f"run:{run_id}")
            if record is not None:
                return record
        return None

    @translate_redis_errors
    async def list_runs(
        self, where: RunFilter, before: str | None, limit: int
    ) -> tuple[list[Record], str | None]:
        """A page of runs, newest first, and the cursor of the next page (or None)."""
        found: list[Record] = []
        cursor = before
        scanned = 0
        while len(found) < limit and scanned < SCAN_BOUND:
            newest = await self._newest(where.index(), cursor, limit)
            if not newest:
                return found, None
            scanned += len(newest)
            members = [member for member, _ in newest]
            ids = [m.split(":", 1)[1] for m in members]
            kept_in = [p for _, p in newest]
            for record in await self._records("run", ids, kept_in):
                if where.matches(record) and len(found) < limit:
                    found.append(record)
            cursor = members[-1] if len(found) < limit else _member(found[-1])
        more = await self._newest(where.index(), _member(found[-1]), 1) if found else []
        return found, (_member(found[-1]) if found and more else None)

    async def _newest(self, index: str, before: str | None, limit: int) -> list[tuple[str, int]]:
        """The ``limit`` newest members of ``index`` over every partition, each with the
        partition that holds it."""
        high = f"({before}" if before else "+"
        per_partition = []
        for p in range(self.keys.partitions):
            raw = await self.redis.zrevrangebylex(
                self._key(p, index), high, "-", start=0, num=limit
            )
            per_partition.append([(m.decode() if isinstance(m, bytes) else m, p) for m in raw])
        return list(heapq.merge(*per_partition, reverse=True))[:limit]

    @translate_redis_errors
    async def schedules_of_workflow(self, workflow_id: str, limit: int = 10) -> list[str]:
        return await self._ids(f"schedules:workflow:{workflow_id}", None, limit)

    @translate_redis_errors
    async def count_schedules(self, prefix: str | None = None, index: str = "schedules") -> int:
        """How many schedules ``index`` holds (deleted ones leave every index): of the
        namespace whose ids start with ``prefix`` ("": ``default``; None: of all)."""
        total = 0
        for p in range(self.keys.partitions):
            key = self._key(p, index)
            if prefix:
                high = f"({prefix[:-1]}{_AFTER_SEPARATOR}"
                total += int(await self.redis.zlexcount(key, f"[{prefix}", high))
            elif prefix is None:
                total += int(await self.redis.zcard(key))
            else:  # default's ids are the ones without a separator
                total += int(await self.redis.zcard(key)) - await self._namespaced_in(p, key)
        return total

    async def _namespaced_in(self, p: int, key: str) -> int:
        """How many of ``key``'s ids are of a namespace other than ``default``."""
        if key == self._key(p, "schedules"):  # every live schedule: the index has them all
            return int(await self.redis.zcard(self._key(p, schedules.NAMESPACED)))
        counted = 0
        for namespace in await self._namespaces_in(p):
            low, high = f"[{namespace}{SEPARATOR}", f"({namespace}{_AFTER_SEPARATOR}"
            counted += int(await self.redis.zlexcount(key, low, high))
        return counted

    async def _namespaces_in(self, p: int) -> list[str]:
        """The namespaces other than ``default`` that hold schedules in partition ``p``:
        one read per namespace, stepping over each one's ids at once."""
        key = self._key(p, schedules.NAMESPACED)
        found: list[str] = []
        low = "-"
        for _ in range(NAMESPACE_BOUND):
            first = await self.redis.zrangebylex(key, low, "+", start=0, num=1)
            if not first:
                return found
            member = first[0]
            namespace = namespace_of(member.decode() if isinstance(member, bytes) else member)
            found.append(namespace)
            low = f"[{namespace}{_AFTER_SEPARATOR}"
        raise RuntimeError(f"more than {NAMESPACE_BOUND} namespaces hold schedules")

    @translate_redis_errors
    async def schedule_counts(self) -> dict[tuple[str, str], int]:
        """Live schedules by (namespace, status), over every partition."""
        counts: dict[tuple[str, str], int] = {}
        for p in range(self.keys.partitions):
            names = await self._namespaces_in(p)
            for status in STATUSES:
                key = self._key(p, f"schedules:status:{status}")
                rest = int(await self.redis.zcard(key))
                for namespace in names:
                    low, high = f"[{namespace}{SEPARATOR}", f"({namespace}{_AFTER_SEPARATOR}"
                    n = int(await self.redis.zlexcount(key, low, high))
                    counts[namespace, status] = counts.get((namespace, status), 0) + n
                    rest -= n
                counts[DEFAULT, status] = counts.get((DEFAULT, status), 0) + rest
        return counts
