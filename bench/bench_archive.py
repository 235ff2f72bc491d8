"""Replay, rebuild, verify, archive and restore speed on a log of ``--events`` events.

Starts a redis-server on 127.0.0.1 (AOF off: the figures are about cronstream's
work, not the disk's) and fills partition 0's log directly, in pipelined XADD
batches, with the entries the scripts write: a workflow, ``--schedules``
ScheduleCreated, then fires of target-less runs (ScheduleFired, RunQueued,
RunSucceeded, as fire.lua appends them) with an occasional pause and resume,
every entry with its hash chain fields. Then measures, in this order:

- replay: ``read_all`` over the live log (decode and upcast every event);
- rebuild: ``projections.rebuild.rebuild`` (drop and rebuild every view);
- verify: ``verify`` over the live log;
- archive: everything to gzip segments in a temporary directory, then trim;
- replay from the archive, and verify of the archive;
- restore into an empty Redis database: load, write-model rebuild, views rebuild;
  the restored views and state hashes are compared with the originals (OK/FAIL).

    python bench/bench_archive.py [--events 1000000] [--schedules 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from redis.asyncio import Redis

from bench.common import machine_line, redis_server
from migrations.keyspace import check_keyspace
from projections.rebuild import rebuild
from service.audit.archive import archive
from service.audit.restore import restore
from service.audit.verify import verify
from service.audit.write_model import rebuild_write_model
from service.domain import schedule as sched
from service.domain.fire import FireMode, fire_id
from service.domain.timeutil import to_rfc3339
from service.store.archive_reader import read_all
from service.store.chain import entry_hash
from service.store.keys import Keyspace

BATCH = 5000
WORKFLOW = "w"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the first nominal time
MINUTE = 60_000


class Log:
    """Appends entries with their chain fields, the way the Lua scripts do."""

    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self.prev = ""
        self.pending: list[dict[str, str]] = []
        self.count = 0

    def add(self, type_: str, sid: str, data: Any, meta: bytes) -> None:
        raw = orjson.dumps(data)
        fields = {
            "type": type_,
            "v": "1",
            "sid": sid,
            "data": raw.decode(),
            "meta": meta.decode(),
            "prev": self.prev,
        }
        fields["hash"] = entry_hash(
            self.prev.encode(), type_.encode(), b"1", sid.encode(), raw, meta
        )
        self.prev = fields["hash"]
        self.pending.append(fields)

    async def flush(self) -> None:
        if not self.pending:
            return
        log = self.keys.log(0)
        async with self.redis.pipeline(transaction=False) as pipe:
            for fields in self.pending:
                stored: Any = fields
                pipe.xadd(log, stored)
            pipe.set(self.keys.chain(0), self.prev)
            await pipe.execute()
        self.count += len(self.pending)
        self.pending = []


def schedule_config(i: int) -> dict[str, Any]:
    config = sched.ScheduleConfig.model_validate(
        {
            "name": f"bench {i}",
            "workflow_id": WORKFLOW,
            "spec": {"cron": ["* * * * *"], "timezone": "UTC"},
            "tags": [f"team-{i % 3}"],
        }
    )
    return config.model_dump(mode="json")


async def fill(redis: Redis, keys: Keyspace, events: int, schedules: int) -> int:
    log = Log(redis, keys)
    command_meta = orjson.dumps({"actor": "bench", "correlation_id": "c"})
    fire_meta = orjson.dumps({"actor": "ticker:bench", "epoch": 1})
    log.add("WorkflowCreated", WORKFLOW, {"workflow": {"target": {"type": "none"}}}, command_meta)
    for i in range(schedules):
        body = {"schedule": schedule_config(i), "paused": False, "note": ""}
        log.add("ScheduleCreated", f"s{i:05d}", body, command_meta)
    await log.flush()
    trigger = {"type": "schedule", "source": "", "label": ""}
    paused: set[str] = set()
    tick = 0
    while log.count + len(log.pending) < events:
        nominal_ms = START_MS + tick * MINUTE
        nominal = to_rfc3339(nominal_ms)
        for i in range(schedules):
            sid = f"s{i:05d}"
            if (tick + i) % 97 == 0:
                kind = "ScheduleResumed" if sid in paused else "SchedulePaused"
                paused ^= {sid}
                log.add(kind, sid, {"note": "bench"}, command_meta)
            if sid in paused:
                continue
            run_id = f"run-{tick}-{i}"
            fire = {
                "fire_id": fire_id(sid, nominal_ms, FireMode.SCHEDULE),
                "nominal_time": nominal,
                "fire_time": nominal,
                "epoch": 1,
                "trigger": "schedule",
                "run_id": run_id,
                "held": False,
            }
            log.add("ScheduleFired", sid, fire, fire_meta)
            queued = {
                "run_id": run_id,
                "schedule_id": sid,
                "workflow_id": WORKFLOW,
                "trigger": trigger,
                "nominal_time": nominal,
                "input": None,
            }
            log.add("RunQueued", sid, queued, fire_meta)
            log.add("RunSucceeded", sid, {"run_id": run_id, "attempt": 0}, fire_meta)
            if len(log.pending) >= BATCH:
                await log.flush()
        tick += 1
    await log.flush()
    return log.count


def rate(count: int, seconds: float) -> str:
    return f"{count:,} events in {seconds:.2f}s = {count / seconds:,.0f} events/s"


async def count_all(redis: Redis, keys: Keyspace, directory: Path | None) -> tuple[int, float]:
    started = time.perf_counter()
    count = 0
    async for _event in read_all(redis, keys, 0, directory):
        count += 1
    return count, time.perf_counter() - started


async def keys_content(redis: Redis, pattern: str) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    async for key in redis.scan_iter(match=pattern, count=1000):
        kind = await redis.type(key)
        if kind == b"hash":
            out[key] = await redis.hgetall(key)
        elif kind == b"zset":
            out[key] = await redis.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = await redis.dump(key)
    return out


async def main(events: int, schedules: int) -> int:
    print(machine_line())
    keys = Keyspace()
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_server(Path(tmp) / "redis", appendonly=False) as server,
    ):
        redis = Redis.from_url(server.url, socket_timeout=120)
        target = Redis.from_url(server.url + "/1", socket_timeout=120)
        try:
            await check_keyspace(redis, keys)
            started = time.perf_counter()
            total = await fill(redis, keys, events, schedules)
            print(f"fill: {rate(total, time.perf_counter() - started)} (direct XADD, not measured)")
            info = await redis.info("memory")
            print(f"redis used_memory: {int(info['used_memory']) / 2**20:,.0f} MiB")

            count, seconds = await count_all(redis, keys, None)
            print(f"replay (read_all, live log): {rate(count, seconds)}")
            report = await rebuild(redis, keys)
            print(f"rebuild (views): {rate(report.events, report.seconds)}")
            model = await rebuild_write_model(redis, keys)
            print(f"write model rebuild (the fill wrote none): {rate(model.events, model.seconds)}")
            checked = await verify(redis, keys, None)
            assert checked.intact
            print(f"verify (live log): {rate(checked.entries, checked.seconds)}")

            directory = Path(tmp) / "archive"
            far = int(time.time() * 1000) + 86_400_000
            archived = await archive(redis, keys, far, directory)
            assert archived.entries == total, archived
            mb = archived.bytes / 1e6
            print(
                f"archive: {rate(archived.entries, archived.seconds)}, {mb:,.1f} MB written "
                f"({mb * 1e6 / archived.entries:.0f} bytes/event gzip), "
                f"{archived.partitions[0].segments} segment(s)"
            )
            count, seconds = await count_all(redis, keys, directory)
            print(f"replay (read_all, archive): {rate(count, seconds)}")
            checked = await verify(redis, keys, directory)
            assert checked.intact
            print(f"verify (archive): {rate(checked.entries, checked.seconds)}")

            views = await keys_content(redis, "cs:{0}:view:*")
            states = await keys_content(redis, "cs:{0}:state:*")
            restored = await restore(target, keys, directory)
            print(
                f"restore load (XADD, {restored.bytes_read / 1e6:,.1f} MB read): "
                f"{rate(restored.entries, restored.load_seconds)}"
            )
            model = restored.write_model
            print(f"restore write model: {rate(model.events, model.seconds)}")
            print(f"restore views: {rate(restored.views.events, restored.views.seconds)}")
            print(f"restore total: {rate(restored.entries, restored.seconds)}")
            same_views = await keys_content(target, "cs:{0}:view:*") == views
            same_state = await keys_content(target, "cs:{0}:state:*") == states
            ok = same_views and same_state
            print(f"restored views and state hashes identical: {'OK' if ok else 'FAIL'}")
            return 0 if ok else 1
        finally:
            await redis.aclose()
            await target.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--schedules", type=int, default=1000)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.events, args.schedules)))
