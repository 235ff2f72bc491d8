"""Rebuild speed: events per second to drop and rebuild every view from the log.

Starts a redis-server on 127.0.0.1 and fills the log the way the service does:
a workflow and ``--schedules`` schedules through ``CommandService``, then
updates, pauses and resumes (and a few deletes) decided by the pure domain and
appended through ``EventStore.append`` by concurrent writers, until the log
holds ``--events`` events. Then runs ``projections.rebuild.rebuild`` and prints
events, seconds, events/s, Redis memory and this process's peak RSS during the
rebuild. A sanity check compares the rebuilt views with the schedules written
and prints OK or FAIL (exit status 1).

    python bench/bench_rebuild.py [--events 100000] [--schedules 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.asyncio import Redis

from bench.common import (
    command_calls,
    describe_calls,
    machine_line,
    mib,
    peak_rss_kb,
    redis_server,
    reset_peak_rss,
)
from migrations.keyspace import check_keyspace
from projections.read import ViewReader
from projections.rebuild import rebuild
from service.commands import (
    AUTO_KEY_TTL_MS,
    SCHEDULES,
    CommandService,
    ProjectionWaiter,
    RequestContext,
)
from service.domain import schedule as sched
from service.domain import workflow as wf
from service.domain.policies import ScheduleStatus
from service.store.eventstore import EventStore, Idempotency
from service.store.keys import Keyspace

FILL_TIMEOUT_S = 150.0
REBUILD_TIMEOUT_S = 150.0
CHECK_TIMEOUT_S = 30.0
WORKFLOW_ID = "w"
CRONS = ("*/5 * * * *", "0 2 * * MON-FRI", "30 */2 * * *", "15 9 1 * *")
ZONES = ("Europe/Berlin", "America/New_York", "UTC", "Asia/Tokyo")
DELETE_FRACTION = 0.02


@dataclass
class Tracked:
    """What the fill wrote for one schedule: the write model and its version."""

    state: sched.ScheduleState
    version: int


def configs() -> list[sched.ScheduleConfig]:
    """A few distinct configs, validated once and reused (spec validation is not measured)."""
    return [
        sched.ScheduleConfig.model_validate(
            {
                "name": f"bench {i}",
                "workflow_id": WORKFLOW_ID,
                "spec": {"cron": [CRONS[i % len(CRONS)]], "timezone": ZONES[i % len(ZONES)]},
                "tags": [f"team-{i % 3}"],
            }
        )
        for i in range(8)
    ]


class Filler:
    def __init__(self, redis: Redis, keys: Keyspace, seed: int) -> None:
        self.store = EventStore(redis, keys)
        # Nothing projects during the fill, so commands must not wait for the views.
        self.commands = CommandService(
            self.store, ProjectionWaiter(redis, keys), wait_timeout_s=0.0
        )
        self.configs = configs()
        self.rng = random.Random(seed)
        self.tracked: dict[str, Tracked] = {}
        self.appended = 0

    async def create(self, count: int, concurrency: int) -> None:
        ctx = RequestContext(actor="bench")
        await self.commands.put_workflow(
            WORKFLOW_ID, wf.WorkflowConfig.model_validate({"target": {"type": "none"}}), ctx
        )
        self.appended += 1
        ids = iter(f"bench-{i:06d}" for i in range(count))

        async def worker() -> None:
            for sid in ids:
                config = self.configs[self.rng.randrange(len(self.configs))]
                command = sched.CreateSchedule(sid, config)
                outcome = await self.commands.schedule(sid, command, ctx)
                state, version = await self.commands.load(SCHEDULES, sid)
                assert state is not None and version == outcome.version
                self.tracked[sid] = Tracked(state, version)
                self.appended += len(outcome.positions)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    def next_command(self, sid: str, state: sched.ScheduleState) -> sched.ScheduleCommand:
        roll = self.rng.random()
        if roll < 0.4:
            others = [c for c in self.configs if c != state.config]
            return sched.UpdateSchedule(sid, self.rng.choice(others))
        if state.status is ScheduleStatus.PAUSED:
            return sched.ResumeSchedule(sid, note="bench resume")
        return sched.PauseSchedule(sid, note="bench pause")

    async def append(self, sid: str, command: sched.ScheduleCommand) -> None:
        """Decide, evolve and append one command for a schedule this writer owns."""
        tracked = self.tracked[sid]
        events = SCHEDULES.decide(tracked.state, command)
        state: sched.ScheduleState | None = tracked.state
        for event in events:
            state = SCHEDULES.evolve(state, sid, event)
        assert state is not None
        ctx = RequestContext(actor="bench")
        key = ctx.storage_key()
        result = await self.store.append(
            SCHEDULES.kind,
            sid,
            events,
            meta=ctx.meta(),
            expected_version=tracked.version,
            snapshot=SCHEDULES.snapshot(state),
            idempotency=Idempotency(key=key, fingerprint=key, ttl_ms=AUTO_KEY_TTL_MS),
        )
        self.tracked[sid] = Tracked(state, result.version)
        self.appended += len(result.positions)

    async def churn(self, total_events: int, concurrency: int) -> None:
        """Append commands until the log holds ``total_events``; each writer owns its ids."""
        ids = sorted(self.tracked)
        doomed = set(self.rng.sample(ids, int(len(ids) * DELETE_FRACTION)))
        budget = total_events - self.appended - len(doomed)

        async def writer(owned: list[str], quota: int) -> None:
            for n in range(quota):
                sid = owned[n % len(owned)]
                await self.append(sid, self.next_command(sid, self.tracked[sid].state))
            for sid in owned:
                if sid in doomed:
                    await self.append(sid, sched.DeleteSchedule(sid, note="bench delete"))

        writers = min(concurrency, len(ids))
        quotas = [budget // writers + (1 if w < budget % writers else 0) for w in range(writers)]
        await asyncio.gather(*(writer(ids[w::writers], quotas[w]) for w in range(writers)))


async def used_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


async def log_length(redis: Redis, keys: Keyspace) -> int:
    total = 0
    for p in range(keys.partitions):
        total += int(await redis.xlen(keys.log(p)))
    return total


async def check_views(redis: Redis, keys: Keyspace, tracked: dict[str, Tracked]) -> list[str]:
    """Differences between the rebuilt views and what the fill wrote (empty: OK)."""
    problems: list[str] = []
    live = {sid: t for sid, t in tracked.items() if not t.state.deleted}
    reader = ViewReader(redis, keys)
    found = 0
    for sid, t in tracked.items():
        record = await reader.schedule(sid)
        if record is None:
            if not t.state.deleted:
                problems.append(f"{sid}: live schedule missing from the view")
            continue
        found += 1
        if t.state.deleted:
            problems.append(f"{sid}: deleted schedule still in the view")
        elif record["status"] != str(t.state.status) or record["version"] != t.version:
            problems.append(
                f"{sid}: view has {record['status']} v{record['version']}, "
                f"log says {t.state.status} v{t.version}"
            )
    indexed = 0
    for p in range(keys.partitions):
        indexed += int(await redis.zcard(keys.view(p, "schedules")))
    if found != len(live) or indexed != len(live):
        problems.append(f"{found} records and {indexed} indexed, expected {len(live)} live")
    return problems


async def bench(args: argparse.Namespace, redis_url: str) -> int:
    redis = Redis.from_url(redis_url, socket_timeout=30, max_connections=args.concurrency + 4)
    keys = Keyspace(partitions=args.partitions)
    try:
        await check_keyspace(redis, keys)
        filler = Filler(redis, keys, args.seed)
        started = time.perf_counter()
        async with asyncio.timeout(FILL_TIMEOUT_S):
            await filler.create(args.schedules, args.concurrency)
            await filler.churn(args.events, args.concurrency)
        fill_s = time.perf_counter() - started
        in_log = await log_length(redis, keys)
        live = sum(1 for t in filler.tracked.values() if not t.state.deleted)
        print(
            f"fill: {in_log} events ({len(filler.tracked)} schedules, {live} live) "
            f"in {fill_s:.2f}s = {in_log / fill_s:,.0f} events/s appended"
        )
        memory_before = await used_memory(redis)

        await redis.config_resetstat()
        peak_reset = reset_peak_rss()
        async with asyncio.timeout(REBUILD_TIMEOUT_S):
            report = await rebuild(redis, keys)
        rss = peak_rss_kb()
        calls = command_calls(await redis.info("commandstats"))
        memory_after = await used_memory(redis)

        print(
            f"rebuild: {report.events} events in {report.seconds:.2f}s = "
            f"{report.events_per_second:,.0f} events/s ({report.partitions} partition(s), "
            f"{report.dropped_keys} view keys dropped)"
        )
        print(f"  {describe_calls(calls, report.events, 'event')}")
        print(
            f"redis used_memory: {memory_before / 2**20:.1f} MiB after fill, "
            f"{memory_after / 2**20:.1f} MiB after rebuild (views included)"
        )
        scope = "during rebuild" if peak_reset else "whole process, fill included"
        print(f"python peak RSS ({scope}): {mib(rss)}")

        async with asyncio.timeout(CHECK_TIMEOUT_S):
            problems = await check_views(redis, keys, filler.tracked)
        if report.events != in_log:
            problems.append(f"rebuild applied {report.events} events, log holds {in_log}")
        if not problems:
            print(f"check: OK ({live} live schedules in the view, all statuses and versions match)")
            return 0
        print(f"check: FAIL ({len(problems)} problems)")
        for line in problems[:10]:
            print(f"  {line}")
        return 1
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--schedules", type=int, default=2000, help="created through commands")
    parser.add_argument("--concurrency", type=int, default=32, help="writers in the fill")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--appendonly", choices=("yes", "no"), default="yes", help="Redis AOF (default yes)"
    )
    args = parser.parse_args(argv)
    if args.events < args.schedules * 2:
        parser.error("--events must be at least twice --schedules")

    print(machine_line())
    print(
        f"rebuild: {args.events} events target, {args.schedules} schedules, "
        f"{args.partitions} partition(s), redis appendonly={args.appendonly}"
    )
    with tempfile.TemporaryDirectory(prefix="cronstream-bench-") as tmp:
        with redis_server(Path(tmp) / "redis", appendonly=args.appendonly == "yes") as server:
            return asyncio.run(bench(args, server.url))


if __name__ == "__main__":
    sys.exit(main())
