"""Projector throughput and lag under fires: does the projector keep up with the ticker?

Starts a redis-server on 127.0.0.1 (AOF on), creates ``--schedules`` schedules
through ``CommandService`` (workflow target ``none``) and projects them here. Then
it appends fires the way ``fire.lua`` does for a ``none`` target, with the store's
hash-chained append from the shared Lua prelude: per fire ``ScheduleFired``,
``RunQueued`` and ``RunSucceeded`` (3 events), round robin over the schedules. The
views are kept by one ``cronstream serve --roles projector`` process:

1. **drain**: ``--backlog`` fires are appended before the projector starts; once it
   moves its checkpoint, the time until it reaches the log's end gives events/s.
2. **sustained**: fires at ``--rate`` per second for ``--seconds``, the projector
   following; the projection lag, sampled every ``--sample-ms`` as ``/readyz``
   measures it (age of the oldest log entry the views have not applied, by Redis's
   clock), gives p50/p99/max, then how long the views take to reach the log's end
   once the writer stops.

Prints events/s, lag percentiles, the CPU seconds of the projector process and of
Redis, and checks the views (every schedule's action count and the run index)
against what was written: OK or FAIL (exit status 1).

    python bench/bench_projector.py [--schedules 20000] [--backlog 50000]
        [--rate 20000] [--seconds 20] [--service-root DIR]
        [--partitions P --projectors N]

``--partitions P --projectors N``: the schedules spread over P partitions, each fire
appended to its schedule's partition, and N projector processes dividing the
partitions by their leases (projections/shared.py); lag is the largest partition's,
CPU the sum of the processes'.

``--service-root`` runs the projector of another checkout (to compare before/after).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.asyncio import Redis

from bench.common import (
    REPO_ROOT,
    Deadline,
    cpu_seconds,
    machine_line,
    percentile,
    redis_server,
    stop_process,
)
from migrations.keyspace import check_keyspace
from service.commands import SCHEDULES, WORKFLOWS, CommandService, ProjectionWaiter, RequestContext
from service.domain import schedule as sched
from service.domain import workflow as wf
from service.domain.fire.events import ScheduleFired
from service.domain.runs import RunQueued, RunSucceeded
from service.store.eventstore import EventStore, as_text
from service.store.keys import Keyspace
from service.store.scripts import prelude

CREATE_CONCURRENCY = 64
FIRES_PER_CALL = 500
WRITE_TICK_S = 0.01
DRAIN_TIMEOUT_S = 300.0
CATCH_UP_TIMEOUT_S = 120.0
START_TIMEOUT_S = 30.0
POLL_S = 0.02

FIRE_BODY = """
-- KEYS[1] the log, KEYS[2] its chain head; ARGV[1] the events index prefix,
-- ARGV[2] the workflow id, ARGV[3] the fire time, then per fire: sid, run id, nominal
local trigger = cjson.encode({type = 'schedule', source = '', label = ''})
for i = 4, #ARGV, 3 do
  local sid, run_id, nominal = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local index = ARGV[1] .. sid
  chain_append(KEYS[1], KEYS[2], index, 'ScheduleFired', versions.ScheduleFired, sid,
    cjson.encode({fire_id = run_id, nominal_time = nominal, fire_time = ARGV[3], epoch = 1,
      trigger = 'schedule', run_id = run_id, held = false}), '{}')
  chain_append(KEYS[1], KEYS[2], index, 'RunQueued', versions.RunQueued, sid,
    run_queued_json(run_id, sid, ARGV[2], trigger, nominal, 'null'), '{}')
  chain_append(KEYS[1], KEYS[2], index, 'RunSucceeded', versions.RunSucceeded, sid,
    '{"run_id":' .. cjson.encode(run_id) .. ',"attempt":0}', '{}')
end
return (#ARGV - 3) / 3
"""


def fire_script_source() -> str:
    versions = ", ".join(
        f"{cls.type_name()} = '{cls.version}'" for cls in (ScheduleFired, RunQueued, RunSucceeded)
    )
    return f"local versions = {{{versions}}}\n" + prelude() + FIRE_BODY


@dataclass
class Writer:
    """Appends fires, round robin over the schedules; remembers what it wrote."""

    redis: Redis
    keys: Keyspace
    schedules: int
    fired: int = 0
    per_schedule: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.script = self.redis.register_script(fire_script_source())

    async def fire(self, count: int) -> None:
        """``count`` fires, each appended to its schedule's partition's log."""
        while count > 0:
            n = min(count, FIRES_PER_CALL)
            calls: dict[int, list[Any]] = {}
            for i in range(self.fired, self.fired + n):
                sid = schedule_id(i % self.schedules)
                p = self.keys.partition_of(sid)
                args = calls.setdefault(
                    p, [self.keys.aggregate_events(p, "schedule", ""), "w", "2026-01-01T00:00:00Z"]
                )
                args += [sid, f"r-{i:09d}", f"2026-01-01T00:{i % 60:02d}:00Z"]
                self.per_schedule[sid] = self.per_schedule.get(sid, 0) + 1
            for p, args in calls.items():
                await self.script(keys=[self.keys.log(p), self.keys.chain(p)], args=args)
            self.fired += n
            count -= n

    async def at_rate(self, rate: float, seconds: float) -> tuple[int, float]:
        """Fire at ``rate`` per second for ``seconds``; return the fires and the seconds
        taken. A writer that falls behind catches up in steps of a tenth of a second's
        fires at most, so the window ends on time (the rate reached says it fell short)."""
        started = time.monotonic()
        first = self.fired
        step = max(1, int(rate / 10))
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(rate * elapsed) - (self.fired - first)
            if due > 0:
                await self.fire(min(due, step))
            await asyncio.sleep(WRITE_TICK_S)
        return self.fired - first, time.monotonic() - started


def schedule_id(i: int) -> str:
    return f"s{i:06d}"


async def create(redis: Redis, keys: Keyspace, count: int) -> float:
    commands = CommandService(
        EventStore(redis, keys), ProjectionWaiter(redis, keys), wait_timeout_s=0
    )
    ctx = RequestContext(actor="bench")
    target = wf.WorkflowConfig.model_validate({"target": {"type": "none"}})
    await commands.execute(WORKFLOWS, "w", wf.PutWorkflow("w", target), ctx)
    config = sched.ScheduleConfig.model_validate(
        {"workflow_id": "w", "spec": {"intervals": [{"every": "5s"}]}, "tags": ["bench"]}
    )
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)
    started = time.perf_counter()

    async def one(i: int) -> None:
        async with gate:
            sid = schedule_id(i)
            await commands.execute(SCHEDULES, sid, sched.CreateSchedule(sid, config), ctx)

    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - started


class Lag:
    """The projection's lag as /readyz measures it, by Redis's clock."""

    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys

    async def checkpoint(self) -> str:
        """Every partition's view checkpoint, joined: it changes when any moves."""
        raws = [
            await self.redis.hget(self.keys.checkpoint(p), "position")
            for p in range(self.keys.partitions)
        ]
        return ",".join(as_text(raw or b"") for raw in raws)

    async def seconds(self) -> tuple[float, str]:
        """The largest lag over the partitions."""
        positions = (await self.checkpoint()).split(",")
        oldest: int | None = None
        for p, position in enumerate(positions):
            start = f"({position}" if position else "-"
            pending: Any = await self.redis.xrange(self.keys.log(p), min=start, count=1)
            if pending:
                at = int(as_text(pending[0][0]).split("-")[0])
                oldest = at if oldest is None else min(oldest, at)
        if oldest is None:
            return 0.0, ",".join(positions)
        seconds, micros = await self.redis.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        return max(0.0, (now_ms - oldest) / 1000), ",".join(positions)

    async def caught_up(self, timeout_s: float) -> float | None:
        """Seconds until the views reach the log's end (None: not within ``timeout_s``)."""
        started = time.monotonic()
        deadline = Deadline(timeout_s)
        while not deadline.expired():
            lag, _ = await self.seconds()
            if lag == 0.0:
                return time.monotonic() - started
            await asyncio.sleep(POLL_S)
        return None


async def redis_cpu(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def start_projector(
    url: str, root: Path, work: Path, partitions: int = 1, n: int = 0
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REDIS_URL": url,
        "PYTHONPATH": str(root),
        "CRONSTREAM_PARTITIONS": str(partitions),
    }
    args = [sys.executable, "-m", "service", "serve", "--roles", "projector"]
    args += ["--log-level", "WARNING", "--data-dir", str(work / f"data{n}")]
    with open(work / f"projector{n}.log", "wb") as log:
        return subprocess.Popen(
            args, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )


def cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) or 0.0 for pid in pids)


async def drain(lag: Lag, events: int, pids: list[int]) -> tuple[float, float, float] | None:
    """(seconds, events/s, projector CPU seconds) from the first checkpoint move to the
    log's end (so the process's start is not counted)."""
    before = await lag.checkpoint()
    deadline = Deadline(START_TIMEOUT_S)
    while await lag.checkpoint() == before:
        if deadline.expired():
            return None
        await asyncio.sleep(0.005)
    started, cpu0 = time.monotonic(), cpu_of(pids)
    if await lag.caught_up(DRAIN_TIMEOUT_S) is None:
        return None
    seconds = time.monotonic() - started
    return seconds, events / seconds, cpu_of(pids) - cpu0


async def sample(lag: Lag, every_s: float, stop: asyncio.Event, into: list[float]) -> None:
    while not stop.is_set():
        into.append((await lag.seconds())[0])
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        except TimeoutError:
            pass


async def check(redis: Redis, keys: Keyspace, writer: Writer) -> list[str]:
    from projections.read import ViewReader

    problems = []
    reader = ViewReader(redis, keys)
    for i in range(writer.schedules):
        sid = schedule_id(i)
        record = await reader.schedule(sid)
        count = record["info"]["action_count"] if record else None
        if count != writer.per_schedule.get(sid, 0):
            problems.append(f"{sid}: action_count {count}, {writer.per_schedule.get(sid, 0)} fired")
    runs = sum([int(await redis.zcard(keys.view(p, "runs"))) for p in range(keys.partitions)])
    if runs != writer.fired:
        problems.append(f"runs index holds {runs}, {writer.fired} fired")
    return problems


async def bench(args: argparse.Namespace, url: str, work: Path) -> int:
    redis = Redis.from_url(url, socket_timeout=60, max_connections=CREATE_CONCURRENCY + 8)
    keys = Keyspace(partitions=args.partitions)
    await check_keyspace(redis, keys)
    created = await create(redis, keys, args.schedules)
    from projections.projector import Projector

    for p in range(keys.partitions):
        await Projector(redis, keys).catch_up(p)
    print(f"created and projected {args.schedules} schedules ({created:.1f}s to create)")
    writer, lag = Writer(redis, keys, args.schedules), Lag(redis, keys)
    started = time.perf_counter()
    await writer.fire(args.backlog)
    print(
        f"backlog: {args.backlog} fires = {3 * args.backlog} events appended in "
        f"{time.perf_counter() - started:.1f}s"
    )
    root = Path(args.service_root)
    processes = [
        start_projector(url, root, work, args.partitions, n) for n in range(args.projectors)
    ]
    try:
        return await measure(args, redis, keys, writer, lag, [p.pid for p in processes])
    finally:
        for process in processes:
            stop_process(process)
        await redis.aclose()


async def measure(
    args: argparse.Namespace,
    redis: Redis,
    keys: Keyspace,
    writer: Writer,
    lag: Lag,
    pids: list[int],
) -> int:
    redis0 = await redis_cpu(redis)
    drained = await drain(lag, 3 * args.backlog, pids)
    if drained is None:
        print("drain: FAIL (the projector did not reach the log's end in time)")
        return 1
    redis1 = await redis_cpu(redis)
    print(
        f"drain: {3 * args.backlog} events in {drained[0]:.2f}s = {drained[1]:,.0f} events/s "
        f"(projector CPU {1e6 * drained[2] / (3 * args.backlog):.1f} us/event from its first "
        f"batch on, redis CPU {1e6 * (redis1 - redis0) / (3 * args.backlog):.1f} us/event)"
    )
    samples: list[float] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(lag, args.sample_ms / 1000, stop, samples))
    cpu0, redis0 = cpu_of(pids), await redis_cpu(redis)
    fired, window = await writer.at_rate(args.rate, args.seconds)
    stop.set()
    await sampler
    tail = await lag.caught_up(CATCH_UP_TIMEOUT_S)
    cpu1, redis1 = cpu_of(pids), await redis_cpu(redis)
    events = 3 * fired
    print(
        f"sustained: {fired / window:,.0f} fires/s = {events / window:,.0f} events/s appended "
        f"for {window:.1f}s ({events} events); projector CPU "
        f"{1e6 * (cpu1 - cpu0) / events:.1f} us/event, redis CPU (fires included) "
        f"{1e6 * (redis1 - redis0) / events:.1f} us/event"
    )
    ordered = sorted(samples)
    print(
        f"  projection lag ({len(ordered)} samples every {args.sample_ms} ms): "
        f"p50 {1000 * percentile(ordered, 50):.0f} ms  "
        f"p99 {1000 * percentile(ordered, 99):.0f} ms  "
        f"max {1000 * ordered[-1]:.0f} ms; at the log's end "
        + (
            f"{tail:.2f}s after the writer stopped"
            if tail is not None
            else "NOT within the timeout"
        )
    )
    problems = await check(redis, keys, writer)
    if problems or tail is None:
        print(f"check: FAIL ({len(problems)} problems)")
        for line in problems[:10]:
            print(f"  {line}")
        return 1
    print(f"check: OK ({writer.fired} fires in the schedules' counts and the runs index)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=20_000)
    parser.add_argument("--backlog", type=int, default=50_000, help="fires before the start")
    parser.add_argument("--rate", type=float, default=20_000, help="fires per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sample-ms", type=int, default=50)
    parser.add_argument("--service-root", default=str(REPO_ROOT), help="checkout to run")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument(
        "--projectors", type=int, default=1, help="projector processes dividing the partitions"
    )
    args = parser.parse_args(argv)
    print(machine_line())
    print(
        f"projector: {args.schedules} schedules in {args.partitions} partition(s), backlog "
        f"{args.backlog} fires, {args.rate:,.0f} fires/s for {args.seconds:.0f}s, "
        f"{args.projectors} projector process(es) from {args.service_root}"
    )
    with tempfile.TemporaryDirectory(prefix="cronstream-bench-") as tmp:
        with redis_server(Path(tmp) / "redis", appendonly=True) as server:
            return asyncio.run(bench(args, server.url, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
