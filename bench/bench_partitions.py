"""Partitions over tickers: N schedules across P partitions, fired by 1, 2 and 4 processes.

N schedules (default 1,000,000), each due every ``--period`` seconds with its offset
spread evenly over the period (workflow target ``none``, catch-up ``all``), in a
keyspace of P partitions. For each count of ``serve --roles ticker`` processes, in
turn: start them, note how long until the partitions' leases are spread (each holds
at most ceil(P/M)), warm up, then measure a window: fires appended per second,
lateness (append time, Redis's clock, minus nominal time) p50/p99/max of the fires
appended in the window, duplicates (a fire id twice), how far behind the due index
is at the end, and the CPU each process used (tickers and redis-server), which is
what says where the scaling flattens on a small machine. Then the scaling ratio of
each count's fires per second to one ticker's.

When the demand (N / period fires per second) is above what the tickers can do,
the window measures their capacity: fires per second is the throughput, and
lateness is the age of the backlog. Between counts the tickers stop for a few
seconds; catch-up ``all`` fires what fell due meanwhile (the warm-up absorbs it).

    python bench/bench_partitions.py                                 # 1,000,000 schedules
    python bench/bench_partitions.py --schedules 100000 --window 15  # smaller, faster
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO_ROOT,
    Deadline,
    machine_line,
    mib,
    peak_rss_kb,
    percentile,
    redis_server,
    stop_process,
)

CHUNK = 2000


async def prepare(url: str, partitions: int) -> None:
    """Stamp the keyspace (as serve would) and put the workflow every schedule runs."""
    from redis.asyncio import Redis

    from migrations.keyspace import check_keyspace
    from service.commands import WORKFLOWS, CommandService, ProjectionWaiter, RequestContext
    from service.domain import workflow as wf
    from service.store.eventstore import EventStore
    from service.store.keys import Keyspace

    keys = Keyspace("cs", partitions)
    client = Redis.from_url(url, socket_connect_timeout=30, socket_timeout=120)
    await check_keyspace(client, keys)
    waiter = ProjectionWaiter(client, keys)
    commands = CommandService(EventStore(client, keys), waiter, wait_timeout_s=0)
    config = wf.WorkflowConfig.model_validate({"target": {"type": "none"}})
    await commands.execute(WORKFLOWS, "w", wf.PutWorkflow("w", config), RequestContext())
    await client.aclose()


async def create_slice(
    url: str, count: int, partitions: int, period_s: int, first: int, last: int
) -> None:
    """Schedules ``first`` .. ``last - 1`` of ``count``, by the event store's pipelined
    appends (append.lua, as every command writes them)."""
    from redis.asyncio import Redis

    from service.commands import SCHEDULES
    from service.domain import schedule as sched
    from service.store.eventstore import EventStore, Idempotency, PendingAppend
    from service.store.keys import Keyspace

    client = Redis.from_url(url, socket_connect_timeout=30, socket_timeout=120)
    store = EventStore(client, Keyspace("cs", partitions))
    period_ms = period_s * 1000
    policy = {"catchup": "all", "overlap": "allow_all"}
    for start in range(first, last, CHUNK):
        pending = []
        for i in range(start, min(start + CHUNK, last)):
            sid = f"s{i:07d}"
            offset = f"{(i * period_ms) // count}ms"
            spec = {"intervals": [{"every": f"{period_s}s", "offset": offset}]}
            config = sched.ScheduleConfig.model_validate(
                {"workflow_id": "w", "spec": spec, "policy": policy}
            )
            events = SCHEDULES.decide(None, sched.CreateSchedule(sid, config))
            state = None
            for event in events:
                state = SCHEDULES.evolve(state, sid, event)
            key = hashlib.sha256(sid.encode()).hexdigest()
            pending.append(
                PendingAppend(
                    kind=SCHEDULES.kind,
                    aggregate_id=sid,
                    events=list(events),
                    meta={"actor": "bench"},
                    expected_version=0,
                    snapshot=SCHEDULES.snapshot(state),
                    idempotency=Idempotency(key, key, 3_600_000),
                    status=SCHEDULES.status(state),
                    due=SCHEDULES.due_change(state, list(events)),
                )
            )
        for result in await store.append_many(pending):
            if isinstance(result, Exception):
                raise result
    await client.aclose()


def _load(job: tuple[str, int, int, int, int, int]) -> None:
    asyncio.run(create_slice(*job))


def create(url: str, count: int, partitions: int, period_s: int, loaders: int) -> float:
    """Every schedule, by ``loaders`` processes side by side; the seconds it took."""
    asyncio.run(prepare(url, partitions))
    started = time.perf_counter()
    bounds = [count * k // loaders for k in range(loaders + 1)]
    jobs = [(url, count, partitions, period_s, a, b) for a, b in itertools.pairwise(bounds)]
    with ProcessPoolExecutor(max_workers=loaders) as pool:
        list(pool.map(_load, jobs))
    return time.perf_counter() - started


def redis_ms(client: Any) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    tickers: int
    seconds: float = 0.0
    fires: int = 0
    duplicates: int = 0
    lateness: list[int] = field(default_factory=list)
    spread_s: float | None = None
    behind_ms: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    rss: list[int | None] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.fires / self.seconds if self.seconds else 0.0


def window_fires(client: Any, partitions: int, t0: int, t1: int, out: Round) -> None:
    """Every ScheduleFired appended in [t0, t1): count, lateness, duplicate fire ids."""
    seen: set[str] = set()
    for p in range(partitions):
        start = f"{t0}-0"
        while True:
            entries = client.xrange(f"cs:{{{p}}}:log", min=start, max=str(t1 - 1), count=20_000)
            if not entries:
                break
            for eid, fields in entries:
                if fields[b"type"] != b"ScheduleFired":
                    continue
                data = orjson.loads(fields[b"data"])
                fire_id = data["fire_id"]
                if fire_id in seen:
                    out.duplicates += 1
                seen.add(fire_id)
                out.lateness.append(int(eid.split(b"-")[0]) - int(fire_id.split(":")[1]))
            ms, seq = entries[-1][0].decode().split("-")
            start = f"{ms}-{int(seq) + 1}"
    out.fires = len(out.lateness)


def spread(client: Any, partitions: int, pids: list[int]) -> bool:
    """Every partition's lease held, by the processes started, none above its share."""
    owners = [client.get(f"cs:{{{p}}}:lease") for p in range(partitions)]
    if any(o is None for o in owners):
        return False
    held = [int(o.decode().split(":")[1]) for o in owners]
    share = -(-partitions // len(pids))
    return set(held) <= set(pids) and all(held.count(pid) <= share for pid in pids)


def start_tickers(
    tmp: Path, url: str, partitions: int, n: int, ttl_ms: int
) -> list[tuple[Any, Any]]:
    env = {
        **os.environ,
        "REDIS_URL": url,
        "PYTHONPATH": str(REPO_ROOT),
        "CRONSTREAM_PARTITIONS": str(partitions),
        "CRONSTREAM_LEASE_TTL_MS": str(ttl_ms),
    }
    procs = []
    for i in range(n):
        log = open(tmp / f"ticker{n}-{i}.log", "wb")
        command = [sys.executable, "-m", "service", "serve", "--roles", "ticker"]
        command += [
            "--log-level",
            os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "--data-dir",
            str(tmp / f"d{n}-{i}"),
        ]
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        procs.append((proc, log))
    return procs


def wait(seconds: float) -> None:
    deadline = Deadline(seconds)
    while not deadline.expired():
        time.sleep(min(0.2, deadline.remaining()))


def one_round(args: argparse.Namespace, tmp: Path, server: Any, client: Any, n: int) -> Round:
    out = Round(n)
    procs = start_tickers(tmp, server.url, args.partitions, n, args.ttl_ms)
    pids = [p.pid for p, _ in procs]
    try:
        started = time.monotonic()
        deadline = Deadline(60)
        while not deadline.expired() and not spread(client, args.partitions, pids):
            time.sleep(0.05)
        if spread(client, args.partitions, pids):
            out.spread_s = time.monotonic() - started
        wait(args.warmup)
        t0 = redis_ms(client)
        before = {str(pid): cpu_s(pid) for pid in [*pids, server.process.pid]}
        wait(args.window)
        t1 = redis_ms(client)
        after = {str(pid): cpu_s(pid) for pid in [*pids, server.process.pid]}
        for pid, used in after.items():
            name = "redis" if pid == str(server.process.pid) else f"ticker {pid}"
            out.cpu[name] = (used - before[pid]) / ((t1 - t0) / 1000)
        out.rss = [peak_rss_kb(pid) for pid in pids]
        oldest = [
            client.zrange(f"cs:{{{p}}}:due", 0, 0, withscores=True) for p in range(args.partitions)
        ]
        out.behind_ms = max([max(0, t1 - int(o[0][1])) for o in oldest if o] or [0])
    finally:
        for proc, log in procs:
            stop_process(proc)
            log.close()
    out.seconds = (t1 - t0) / 1000
    window_fires(client, args.partitions, t0, t1, out)
    return out


def report(r: Round, base: Round | None) -> None:
    lateness = sorted(r.lateness)
    spread_s = f"{r.spread_s:.1f}s" if r.spread_s is not None else "not within 60s"
    ratio = f"; scaling x{r.rate / base.rate:.2f} of one ticker" if base and base.rate else ""
    print(f"-- {r.tickers} ticker process(es): leases spread in {spread_s}")
    print(
        f"   fires {r.fires} in {r.seconds:.1f}s = {r.rate:,.0f}/s{ratio}; "
        f"duplicates {r.duplicates}; due index {r.behind_ms / 1000:.1f}s behind at the end"
    )
    if lateness:
        print(
            f"   lateness ms: p50 {percentile(lateness, 50):.0f}  "
            f"p99 {percentile(lateness, 99):.0f}  max {lateness[-1]}"
        )
    cpu = ", ".join(f"{name} {share * 100:.0f}%" for name, share in r.cpu.items())
    print(f"   CPU (of one core): {cpu}; total {sum(r.cpu.values()) * 100:.0f}%")
    print("   ticker peak RSS: " + ", ".join(mib(kb) for kb in r.rss))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--schedules", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--tickers", default="1,2,4", help="ticker process counts, in turn")
    parser.add_argument("--period", type=int, default=30, help="seconds between a schedule's fires")
    parser.add_argument("--window", type=float, default=20.0, help="measured seconds per count")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--loaders", type=int, default=2, help="processes creating schedules")
    parser.add_argument("--ttl-ms", type=int, default=5000, help="the tickers' lease TTL")
    parser.add_argument("--appendonly", choices=("yes", "no"), default="yes")
    args = parser.parse_args()
    import redis as sync_redis

    print(machine_line())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    counts = [int(c) for c in args.tickers.split(",")]
    with (
        tempfile.TemporaryDirectory(prefix="cs-bench-partitions-") as tmp,
        redis_server(Path(tmp) / "redis", appendonly=args.appendonly == "yes") as server,
    ):
        created_s = create(server.url, args.schedules, args.partitions, args.period, args.loaders)
        print(
            f"created {args.schedules:,} schedules in {args.partitions} partitions in "
            f"{created_s:.1f}s ({args.schedules / created_s:,.0f}/s); demand "
            f"{args.schedules / args.period:,.0f} fires/s (every {args.period}s each)"
        )
        client = sync_redis.Redis.from_url(server.url, socket_timeout=120)
        rounds: list[Round] = []
        for n in counts:
            rounds.append(one_round(args, Path(tmp), server, client, n))
            report(rounds[-1], rounds[0] if len(rounds) > 1 else None)
        info = client.info("memory")
        print(f"redis used_memory {info['used_memory'] / 2**20:,.0f} MiB")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        client.close()
    return 0 if all(r.duplicates == 0 for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
