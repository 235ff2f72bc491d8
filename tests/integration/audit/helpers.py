"""A hand-built log with a valid hash chain, and ways to look at a whole keyspace."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.clock import FixedClock
from service.domain.timeutil import to_rfc3339
from service.store.chain import entry_hash
from service.store.keys import Keyspace
from service.store.runs import RunStore
from service.ticker.ticker import Ticker
from tests.integration.api.helpers import put_workflow

START_MS = 1_700_000_000_000


def entry(prev: str, i: int, sid: str = "s") -> dict[str, str]:
    data = orjson.dumps({"n": i}).decode()
    meta = orjson.dumps({"actor": "test"}).decode()
    fields = {"type": "Noted", "v": "1", "sid": sid, "data": data, "meta": meta, "prev": prev}
    fields["hash"] = entry_hash(
        prev.encode(), b"Noted", b"1", sid.encode(), data.encode(), meta.encode()
    )
    return fields


async def fill_log(
    redis: Redis, keys: Keyspace, count: int, p: int = 0, start_ms: int = START_MS
) -> list[str]:
    """Append ``count`` chained entries with ids ``start_ms + i``-0; return the ids."""
    prev = (await redis.get(keys.chain(p)) or b"").decode()
    ids = []
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(count):
            fields = entry(prev, i)
            eid = f"{start_ms + i}-0"
            pipe.xadd(keys.log(p), fields, id=eid)  # type: ignore[arg-type]
            ids.append(eid)
            prev = fields["hash"]
        pipe.set(keys.chain(p), prev)
        await pipe.execute()
    return ids


async def set_checkpoint(redis: Redis, keys: Keyspace, position: str, p: int = 0) -> None:
    await redis.hset(keys.checkpoint(p), "position", position)


async def log_ids(redis: Redis, keys: Keyspace, p: int = 0) -> list[str]:
    return [eid.decode() for eid, _ in await redis.xrange(keys.log(p))]


async def dump(redis: Redis, pattern: str) -> dict[str, Any]:
    """Every key matching ``pattern`` with its content, by type (for comparisons)."""
    out: dict[str, Any] = {}
    async for raw in redis.scan_iter(match=pattern, count=1000):
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            out[key] = await redis.hgetall(key)
        elif kind == "zset":
            out[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            out[key] = await redis.lrange(key, 0, -1)
        elif kind == "set":
            out[key] = sorted(await redis.smembers(key))
        elif kind == "string":
            out[key] = await redis.get(key)
        else:
            out[key] = kind
    return out


def chained(count: int, start_ms: int = START_MS) -> list[tuple[str, dict[str, str]]]:
    """``count`` chained entries (id, fields), not yet in Redis."""
    out = []
    prev = ""
    for i in range(count):
        fields = entry(prev, i)
        out.append((f"{start_ms + i}-0", fields))
        prev = fields["hash"]
    return out


async def write_entries(
    redis: Redis, keys: Keyspace, entries: list[tuple[str, dict[str, str]]], p: int = 0
) -> None:
    """XADD entries as given (explicit ids) and set the chain head to the last hash."""
    async with redis.pipeline(transaction=False) as pipe:
        for eid, fields in entries:
            pipe.xadd(keys.log(p), fields, id=eid)  # type: ignore[arg-type]
        if entries:
            pipe.set(keys.chain(p), entries[-1][1]["hash"])
        await pipe.execute()


def rewrite_segment(path: Path, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    """Replace a segment's lines with ``edit(lines)`` (tampering with an archive file)."""
    with gzip.open(path, "rb") as handle:
        lines = handle.readlines()
    with gzip.open(path, "wb") as handle:
        handle.writelines(edit(lines))


async def caught_up(redis: Redis, keys: Keyspace, timeout_s: float = 10) -> None:
    """Wait (bounded) until the views projection has applied the whole log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        last = await redis.xrevrange(keys.log(0), count=1)
        at = await redis.hget(keys.checkpoint(0), "position")
        if last and at == last[0][0]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the projector did not catch up")


async def scripted_history(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    """Workflows, schedules, commands, fires and runs in every state, projected."""
    await put_workflow(api, "wf", target={"type": "http", "url": "http://127.0.0.1:9/"})
    await put_workflow(api, "quiet", target={"type": "none"})
    every_minute = {"cron": ["* * * * *"]}
    schedules: list[dict[str, Any]] = [
        {
            "id": "a",
            "workflow_id": "wf",
            "spec": every_minute,
            "tags": ["x"],
            "policy": {"overlap": "allow_all"},
        },
        {"id": "b", "workflow_id": "quiet", "spec": every_minute, "max_actions": 2},
        {"id": "c", "workflow_id": "wf", "spec": every_minute, "paused": True},
        {"id": "d", "workflow_id": "wf", "spec": every_minute, "policy": {"overlap": "buffer_one"}},
    ]
    ticker = Ticker(redis, keys, clock=clock)
    for lease in ticker.leases:
        assert await lease.acquire()
    for body in schedules:
        r = await api.post("/v1/schedules", json=body)
        assert r.status == 201, await r.text()
    await ticker.tick(0)
    for _ in range(3):
        clock.advance(60_000)
        await ticker.tick(0)
    runs = RunStore(redis, keys)
    now = clock.now_ms()
    queued = [m.decode() for m in sorted(await redis.smembers(keys.running(0, "a")))]
    await runs.finish(0, "a", "schedule", queued[0], outcome="succeeded", meta={}, now_ms=now)
    retry_at = now + 3_600_000
    await runs.finish(
        0,
        "a",
        "schedule",
        queued[1],
        outcome="retry",
        meta={},
        now_ms=now,
        attempt_data={
            "run_id": queued[1],
            "attempt": 1,
            "error": "boom",
            "retry_at": to_rfc3339(retry_at),
        },
        retry_at_ms=retry_at,
    )
    await runs.finish(
        0,
        "a",
        "schedule",
        queued[2],
        outcome="deadlettered",
        meta={},
        now_ms=now,
        final_data={"run_id": queued[2], "reason": "test"},
    )
    [held] = [m.decode() for m in await redis.smembers(keys.running(0, "d"))]
    entries = await redis.xrange(keys.queue(0))
    entry = next(eid.decode() for eid, f in entries if f[b"run_id"].decode() == held)
    await runs.start(0, "d", "schedule", held, entry, "w1", now, to_rfc3339(now))
    for path, body in (
        ("/v1/schedules/a/pause", {"note": "maintenance"}),
        ("/v1/schedules/a/resume", {}),
        ("/v1/schedules/d/pause", {}),
        ("/v1/schedules/d/resume", {}),
        ("/v1/workflows/wf/runs", {"input": {"k": 1}}),
    ):
        r = await api.post(path, json=body)
        assert r.status < 300, await r.text()
        await ticker.tick(0)
    r = await api.patch("/v1/schedules/c", json={"name": "renamed"})
    assert r.status == 200, await r.text()
    r = await api.delete("/v1/schedules/c")
    assert r.status in (200, 204), await r.text()
    clock.advance(60_000)
    await ticker.tick(0)
    await caught_up(redis, keys)
