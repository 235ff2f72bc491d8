"""Re-partition a keyspace offline: ``cronstream migrate --partitions N``.

Every aggregate lives in partition ``crc32(id) % P``; changing ``P`` moves most of
them. With every cronstream process stopped (refused while a ticker lease is held,
a ticker is counted alive, a rebuild holds a projection, or a log was trimmed into
an archive), the migration:

1. **stage**: merges the old partitions' logs in entry-id order and appends each
   entry to a staging log of its aggregate's new partition (``cs:{q}:repartition:log``),
   re-chaining it (``prev``/``hash``, service/store/chain.py). An entry keeps its id
   unless an earlier one of the new partition has it or a later one, then it takes the
   next free id. An aggregate's events were all in one old partition, so they keep
   their order. What the log cannot give back is copied beside it: idempotency
   records (their entry ids rewritten where they changed), backfill marks, stored
   signing secrets. Nothing old is touched yet: an interrupted stage starts over.
2. **clear**: deletes every key of every old and new partition but the staging ones
   (the highest fencing epoch was noted first).
3. **swap**: renames the staging keys to their names, sets each chain head, and sets
   every new partition's epoch to the highest old one, so a fire fenced under an old
   epoch can never be taken for a new one.
4. **rebuild**: rebuilds the write model (state, event lists, due index, marks, runs
   and their queue: service/audit/write_model.py) and the views (projections/rebuild.py)
   from the new logs, then records the new count in ``cs:meta``.

The phase reached is kept in ``cs:meta`` field ``repartition``, so a migrate that
stops anywhere is run again with the same ``--partitions`` and finishes the job.
``cs:meta`` field ``repartitioned`` keeps, per re-partition, the counts, the time,
the entries moved and the old and new chain heads: the chains start again at the
re-partition, and the old heads are what an archive made before it ends with.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from migrations.partitions import PROGRESS
from projections.rebuild import rebuild
from service.audit.write_model import rebuild_write_model
from service.errors import CronstreamError
from service.store.chain import entry_hash
from service.store.eventstore import as_text
from service.store.keys import Keyspace
from service.ticker.membership import ROLE as TICKERS

HISTORY = "repartitioned"
STAGE = "repartition"
KEPT = ("idem", "backfilled", "signing")  # what lives beside the log and cannot be rebuilt
PAGE = 1000
SCAN_COUNT = 1000
MAX_PAGES = 1 << 40
PHASES = ("stage", "clear", "swap", "rebuild")

Id = tuple[int, int]


class RepartitionRefused(CronstreamError, RuntimeError):
    """The keyspace cannot be re-partitioned now (the message says why and what to do)."""


@dataclass
class RepartitionReport:
    before: int
    after: int
    entries: int = 0
    renumbered: int = 0
    kept: int = 0
    dropped: int = 0
    seconds: float = 0.0
    resumed: str = ""
    details: list[str] = field(default_factory=list)


def parse_id(raw: Any) -> Id:
    ms, _, seq = as_text(raw).partition("-")
    return int(ms), int(seq or 0)


def format_id(entry: Id) -> str:
    return f"{entry[0]}-{entry[1]}"


def staging(keys: Keyspace, q: int, suffix: str) -> str:
    return f"{keys.prefix}:{{{q}}}:{STAGE}:{suffix}"


def partition_tag(keys: Keyspace, name: str) -> tuple[int, str] | None:
    """(partition, the rest of the name) of a partition's key, else None."""
    head = f"{keys.prefix}:{{"
    if not name.startswith(head):
        return None
    tag, _, rest = name[len(head) :].partition("}:")
    return (int(tag), rest) if tag.isdigit() else None


async def scan_partition_keys(redis: Redis, keys: Keyspace) -> AsyncIterator[tuple[str, int, str]]:
    """Every key of every numbered partition: (name, partition, rest of the name)."""
    pattern = f"{keys.prefix}:{{*}}:*".replace("[", "\\[")
    async for raw in redis.scan_iter(match=pattern, count=SCAN_COUNT):
        name = as_text(raw)
        tagged = partition_tag(keys, name)
        if tagged is not None:
            yield name, tagged[0], tagged[1]


async def refuse_if_busy(redis: Redis, old: Keyspace) -> None:
    """Offline only: no lease held, no live ticker, no rebuild running, nothing archived."""
    for p in range(old.partitions):
        holder = await redis.get(old.lease(p))
        if holder is not None:
            raise RepartitionRefused(
                f"partition {p}'s ticker lease is held by {as_text(holder)}: stop every "
                "cronstream process (API, tickers, workers, projectors) before re-partitioning"
            )
        if await redis.exists(old.projection_hold(p)):
            raise RepartitionRefused(f"a projection rebuild holds partition {p}: let it finish")
        if await redis.exists(old.archived(p)):
            raise RepartitionRefused(
                f"partition {p}'s log was trimmed into an archive, and a re-partition moves "
                "whole logs: restore the archive (`cronstream restore`) into an empty Redis, "
                "re-partition that, or keep the partition count"
            )
    members = await redis.zrange(old.members(TICKERS), 0, -1)
    if members:
        names = ", ".join(as_text(m) for m in members)
        raise RepartitionRefused(
            f"ticker(s) {names} sent a heartbeat within the lease TTL: stop every cronstream "
            "process (a killed one is forgotten after twice its lease TTL)"
        )


async def _entries(redis: Redis, keys: Keyspace, p: int) -> AsyncIterator[tuple[Id, Any]]:
    start = "-"
    for _ in range(MAX_PAGES):
        page: Any = await redis.xrange(keys.log(p), min=start, count=PAGE)
        if not page:
            return
        for raw_id, fields in page:
            yield parse_id(raw_id), fields
        start = f"({as_text(page[-1][0])}"


async def _merged(redis: Redis, old: Keyspace) -> AsyncIterator[tuple[Id, int, Any]]:
    """Every old entry in (id, old partition) order: (id, old partition, fields)."""
    streams = [_entries(redis, old, p) for p in range(old.partitions)]
    heap: list[tuple[Id, int, Any]] = []
    for p, stream in enumerate(streams):
        first = await anext(stream, None)
        if first is not None:
            heap.append((first[0], p, first[1]))
    heapq.heapify(heap)
    while heap:
        entry_id, p, fields = heapq.heappop(heap)
        yield entry_id, p, fields
        following = await anext(streams[p], None)
        if following is not None:
            heapq.heappush(heap, (following[0], p, following[1]))


class _Stager:
    """Appends old entries to the staging logs of their new partitions, re-chained."""

    def __init__(self, redis: Redis, old: Keyspace, new: Keyspace) -> None:
        self.redis = redis
        self.new = new
        self.heads = [""] * new.partitions
        self.last: list[Id] = [(0, 0)] * new.partitions
        self.counts = [0] * new.partitions
        self.renumbered: dict[tuple[int, str], str] = {}  # (old partition, old id) -> new id
        self.pending: list[tuple[int, str, dict[bytes, bytes]]] = []

    def add(self, entry_id: Id, p: int, fields: Any) -> None:
        sid = as_text(fields.get(b"sid", b""))
        q = self.new.partition_of(sid)
        new_id = entry_id if entry_id > self.last[q] else (self.last[q][0], self.last[q][1] + 1)
        if new_id != entry_id:
            self.renumbered[(p, format_id(entry_id))] = format_id(new_id)
        prev = self.heads[q]
        parts = [fields.get(k, b"") for k in (b"type", b"v", b"sid", b"data", b"meta")]
        digest = entry_hash(prev.encode(), *parts)
        moved = {**fields, b"prev": prev.encode(), b"hash": digest.encode()}
        self.pending.append((q, format_id(new_id), moved))
        self.heads[q], self.last[q] = digest, new_id
        self.counts[q] += 1

    async def flush(self) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for q, new_id, fields in self.pending:
                pipe.xadd(staging(self.new, q, "log"), fields, id=new_id)  # type: ignore[arg-type]
            await pipe.execute()
        self.pending = []


async def _drop_staging(redis: Redis, keys: Keyspace) -> None:
    async for name, _p, rest in scan_partition_keys(redis, keys):
        if rest.startswith(f"{STAGE}:"):
            await redis.delete(name)


async def stage_logs(redis: Redis, old: Keyspace, new: Keyspace) -> _Stager:
    await _drop_staging(redis, new)
    stager = _Stager(redis, old, new)
    async for entry_id, p, fields in _merged(redis, old):
        stager.add(entry_id, p, fields)
        if len(stager.pending) >= PAGE:
            await stager.flush()
    await stager.flush()
    expected = sum([int(await redis.xlen(old.log(p))) for p in range(old.partitions)])
    if sum(stager.counts) != expected:
        raise RepartitionRefused(
            f"staged {sum(stager.counts)} entries of {expected}: was a process writing? "
            "stop every cronstream process and run the migrate again"
        )
    return stager


async def _owner_of_record(redis: Redis, old: Keyspace, p: int, name: str) -> str | None:
    """The aggregate an idempotency record belongs to: the sid of the entry it names, or
    of the run it made; None when neither is left to tell."""
    record: Any = await redis.hgetall(name)
    ids = as_text(record.get(b"ids", b""))
    if ids:
        first = ids.split(",")[0]
        found: Any = await redis.xrange(old.log(p), min=first, max=first)
        return as_text(found[0][1].get(b"sid", b"")) if found else None
    run_id = record.get(b"run_id")
    if run_id is not None:
        sid = await redis.hget(old.run(p, as_text(run_id)), "sid")
        return None if sid is None else as_text(sid)
    return None


async def _kept_partition(
    redis: Redis, old: Keyspace, new: Keyspace, p: int, name: str, rest: str
) -> int | None:
    kind, _, ident = rest.partition(":")
    if kind == "idem":
        owner = await _owner_of_record(redis, old, p, name)
        return None if owner is None else new.partition_of(owner)
    return new.partition_of(ident)


async def _renumber_ids(redis: Redis, target: str, p: int, stager: _Stager) -> None:
    ids = await redis.hget(target, "ids")
    if ids is None or not stager.renumbered:
        return
    moved = [stager.renumbered.get((p, i), i) for i in as_text(ids).split(",")]
    await redis.hset(target, "ids", ",".join(moved))


async def stage_kept(
    redis: Redis, old: Keyspace, new: Keyspace, stager: _Stager, report: RepartitionReport
) -> None:
    """Copy what the log cannot give back into the staging keys of its new partition."""
    found = [
        (name, p, rest)
        async for name, p, rest in scan_partition_keys(redis, old)
        if p < old.partitions and rest.split(":", 1)[0] in KEPT
    ]
    for name, p, rest in found:
        q = await _kept_partition(redis, old, new, p, name, rest)
        dumped = await redis.dump(name)
        if q is None or dumped is None:
            report.dropped += 1
            continue
        ttl = int(await redis.pttl(name))
        target = staging(new, q, f"keep:{rest}")
        await redis.restore(target, max(ttl, 0), dumped, replace=True)
        if rest.startswith("idem:"):
            await _renumber_ids(redis, target, p, stager)
        report.kept += 1


async def clear(redis: Redis, old: Keyspace, new: Keyspace) -> None:
    """Delete every key of the old and new partitions but the staging ones."""
    span = max(old.partitions, new.partitions)
    doomed = [
        name
        async for name, p, rest in scan_partition_keys(redis, new)
        if p < span and not rest.startswith(f"{STAGE}:")
    ]
    for start in range(0, len(doomed), PAGE):
        await redis.delete(*doomed[start : start + PAGE])


async def swap(redis: Redis, new: Keyspace, heads: list[str], epoch: int) -> None:
    """Give the staging keys their names; set chain heads and fencing epochs."""
    async for name, q, rest in scan_partition_keys(redis, new):
        if not rest.startswith(f"{STAGE}:"):
            continue
        suffix = rest[len(STAGE) + 1 :]
        final = new.log(q) if suffix == "log" else f"{new.prefix}:{{{q}}}:{suffix[5:]}"
        await redis.rename(name, final)
    for q in range(new.partitions):
        if heads[q]:
            await redis.set(new.chain(q), heads[q])
        await redis.set(new.epoch(q), epoch)


async def rebuild_derived(redis: Redis, new: Keyspace) -> tuple[int, int]:
    """Rebuild the write model and the views from the new logs: (events, aggregates)."""
    kept = {"log", "log:chain", "epoch"}
    derived = [
        name
        async for name, q, rest in scan_partition_keys(redis, new)
        if q < new.partitions and rest not in kept and rest.split(":", 1)[0] not in KEPT
    ]
    for start in range(0, len(derived), PAGE):
        await redis.delete(*derived[start : start + PAGE])
    model = await rebuild_write_model(redis, new)
    await rebuild(redis, new)
    return model.events, model.aggregates


async def _max_epoch(redis: Redis, old: Keyspace) -> int:
    raw = [await redis.get(old.epoch(p)) for p in range(old.partitions)]
    return max((int(r) for r in raw if r is not None), default=0)


async def _heads(redis: Redis, keys: Keyspace) -> list[str]:
    return [as_text(await redis.get(keys.chain(p)) or b"") for p in range(keys.partitions)]


async def _save(redis: Redis, keys: Keyspace, progress: dict[str, Any]) -> None:
    await redis.hset(keys.meta, PROGRESS, orjson.dumps(progress))


async def _progress(redis: Redis, keys: Keyspace, current: int, to: int) -> dict[str, Any]:
    raw = await redis.hget(keys.meta, PROGRESS)
    if raw is None:
        await refuse_if_busy(redis, Keyspace(keys.prefix, current))
        return {"from": current, "to": to, "phase": PHASES[0]}
    progress: dict[str, Any] = orjson.loads(raw)
    if progress["to"] != to:
        raise RepartitionRefused(
            f"a re-partition from {progress['from']} to {progress['to']} partitions stopped "
            f"in its {progress['phase']} phase: run `cronstream migrate --partitions "
            f"{progress['to']}` to finish it first"
        )
    return progress


async def _stage_phase(
    redis: Redis, old: Keyspace, new: Keyspace, report: RepartitionReport
) -> dict[str, Any]:
    stager = await stage_logs(redis, old, new)
    await stage_kept(redis, old, new, stager, report)
    report.entries = sum(stager.counts)
    report.renumbered = len(stager.renumbered)
    return {
        "epoch": await _max_epoch(redis, old),
        "heads": stager.heads,
        "old_heads": await _heads(redis, old),
        "entries": report.entries,
        "renumbered": report.renumbered,
    }


async def _finish(redis: Redis, new: Keyspace, progress: dict[str, Any]) -> None:
    seconds, micros = await redis.time()
    history: list[Any] = orjson.loads(await redis.hget(new.meta, HISTORY) or b"[]")
    history.append(
        {
            "from": progress["from"],
            "to": progress["to"],
            "at": int(seconds) * 1000 + int(micros) // 1000,
            "entries": progress["entries"],
            "old_heads": progress["old_heads"],
            "new_heads": progress["heads"],
        }
    )
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(new.meta, mapping={"partitions": new.partitions, HISTORY: orjson.dumps(history)})
        pipe.hdel(new.meta, PROGRESS)
        await pipe.execute()


async def repartition(redis: Redis, keys: Keyspace, current: int, to: int) -> RepartitionReport:
    """Move every partition's keys from ``current`` partitions to ``to`` (see the module
    docstring); resumes an interrupted run. The caller holds the migrate lock."""
    started = time.perf_counter()
    report = RepartitionReport(current, to)
    progress = await _progress(redis, keys, current, to)
    old, new = Keyspace(keys.prefix, progress["from"]), Keyspace(keys.prefix, to)
    report.before = old.partitions
    if progress["phase"] != PHASES[0]:
        report.resumed = progress["phase"]
    await _save(redis, keys, progress)
    if progress["phase"] == "stage":
        progress.update(await _stage_phase(redis, old, new, report), phase="clear")
        await _save(redis, keys, progress)
    if progress["phase"] == "clear":
        await clear(redis, old, new)
        progress["phase"] = "swap"
        await _save(redis, keys, progress)
    if progress["phase"] == "swap":
        await swap(redis, new, progress["heads"], progress["epoch"])
        progress["phase"] = "rebuild"
        await _save(redis, keys, progress)
    await rebuild_derived(redis, new)
    await _finish(redis, new, progress)
    report.entries = progress["entries"]
    report.renumbered = progress["renumbered"]
    report.seconds = time.perf_counter() - started
    return report
