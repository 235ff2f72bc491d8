"""Partitions over tickers: N schedules across P partitions, fired by 1, 2 and 4 processes.

N schedules (default 1,000,000), each due every ``--period`` seconds with its offset
spread evenly over the period (workflow target ``none``, catch-up ``all``), in a
keyspace of P partitions, none due before they are all made. For each count of
``serve --roles ticker`` processes, in turn, started ``--gap`` seconds after the
last count stopped (so each starts on the same backlog):

- how long until the partitions' leases are spread (each holds at most ceil(P/M));
- catch-up: fires appended per second while the due index is behind (at most
  ``--catchup`` seconds), which is the tickers' capacity, and its ratio to one
  ticker's: the scaling;
- a steady window: fires per second, lateness (append time, Redis's clock, minus
  nominal time) p50/p99/max, how far behind the due index is at the end;
- duplicates (a fire id appended twice) in both, and the CPU each process used
  (tickers and redis-server) as a share of one core, which says where the scaling
  flattens on a small machine.

    python bench/bench_partitions.py                                  # 1,000,000 schedules
    python bench/bench_partitions.py --schedules 100000 --period 10   # smaller, faster
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
    url: str, count: int, partitions: int, period_s: int, first: int, last: int, start: str
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
    for chunk in range(first, last, CHUNK):
        pending = []
        for i in range(chunk, min(chunk + CHUNK, last)):
            sid = f"s{i:07d}"
            offset = f"{(i * period_ms) // count}ms"
            spec = {
                "intervals": [{"every": f"{period_s}s", "offset": offset}],
                "start_at": start,
            }
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


def _load(job: tuple[str, int, int, int, int, int, str]) -> None:
    asyncio.run(create_slice(*job))


def create(
    url: str, count: int, partitions: int, period_s: int, loaders: int, start_ms: int
) -> float:
    """Every schedule, by ``loaders`` processes side by side, none due before
    ``start_ms`` (so creating them leaves no backlog); the seconds it took."""
    from service.domain.timeutil import to_rfc3339

    asyncio.run(prepare(url, partitions))
    started = time.perf_counter()
    bounds = [count * k // loaders for k in range(loaders + 1)]
    start = to_rfc3339(start_ms)
    jobs = [(url, count, partitions, period_s, a, b, start) for a, b in itertools.pairwise(bounds)]
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
class Fires:
    """The ScheduleFired events appended in a span of Redis time."""

    seconds: float = 0.0
    duplicates: int = 0
    lateness: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.lateness) / self.seconds if self.seconds else 0.0


@dataclass
class Round:
    tickers: int
    spread_s: float | None = None
    catchup: Fires = field(default_factory=Fires)
    caught_up: bool = False
    steady: Fires = field(default_factory=Fires)
    behind_ms: int = 0
    cpu_catchup: dict[str, float] = field(default_factory=dict)
    cpu_steady: dict[str, float] = field(default_factory=dict)
    rss: list[int | None] = field(default_factory=list)


def window_fires(client: Any, partitions: int, t0: int, t1: int, out: Fires) -> None:
    """Every ScheduleFired appended in [t0, t1): lateness, duplicate fire ids."""
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
    out.seconds = (t1 - t0) / 1000


def spread(client: Any, partitions: int, pids: list[int]) -> bool:
    """Every partition's lease held, by the processes started, none above its share."""
    owners = [client.get(f"cs:{{{p}}}:lease") for p in range(partitions)]
    if any(o is None for o in owners):
        return False
    held = [int(o.decode().split(":")[1]) for o in owners]
    share = -(-partitions // len(pids))
    return set(held) <= set(pids) and all(held.count(pid) <= share for pid in pids)


def start_tickers(
    tmp: Path, url: str, partitions: int, n: int, ttl_ms: int, tag: str = ""
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
        log = open(tmp / f"ticker{tag}{n}-{i}.log", "wb")
        command = [sys.executable, "-m", "service", "serve", "--roles", "ticker"]
        command += [
            "--log-level",
            os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "--data-dir",
            str(tmp / f"d{tag}{n}-{i}"),
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


def behind_ms(client: Any, partitions: int) -> int:
    """How long the earliest due schedule of any partition has waited."""
    now = redis_ms(client)
    oldest = [client.zrange(f"cs:{{{p}}}:due", 0, 0, withscores=True) for p in range(partitions)]
    return max([max(0, now - int(o[0][1])) for o in oldest if o] or [0])


class Cpu:
    """CPU each process used between two marks, as a share of one core."""

    def __init__(self, pids: dict[int, str]) -> None:
        self.pids = pids
        self.at = (time.monotonic(), {pid: cpu_s(pid) for pid in pids})

    def since(self) -> dict[str, float]:
        then, used = self.at
        self.at = (time.monotonic(), {pid: cpu_s(pid) for pid in self.pids})
        elapsed = self.at[0] - then
        return {name: (self.at[1][pid] - used[pid]) / elapsed for pid, name in self.pids.items()}


def first_sweep(args: argparse.Namespace, tmp: Path, server: Any, client: Any) -> None:
    """A new schedule is due at once, for a ticker to plan its first time: one ticker
    plans them all (none fires: they start later) before anything is measured."""
    procs = start_tickers(tmp, server.url, args.partitions, 1, args.ttl_ms, "sweep")
    started = time.monotonic()
    try:
        deadline = Deadline(900)
        while not deadline.expired() and behind_ms(client, args.partitions) >= 1000:
            time.sleep(0.5)
    finally:
        for proc, log in procs:
            stop_process(proc)
            log.close()
    took = time.monotonic() - started
    print(
        f"first sweep (one ticker plans every new schedule's first time, nothing due yet): "
        f"{took:.1f}s, {args.schedules / took:,.0f} schedules/s (process start included)"
    )


def one_round(args: argparse.Namespace, tmp: Path, server: Any, client: Any, n: int) -> Round:
    """Start ``n`` tickers on a backlog; measure their catch-up, then a steady window."""
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
        cpu = Cpu({**{pid: f"ticker {pid}" for pid in pids}, server.process.pid: "redis"})
        t_a = redis_ms(client)
        catching = Deadline(args.catchup)
        while not catching.expired() and not out.caught_up:
            out.caught_up = behind_ms(client, args.partitions) < 1000
            time.sleep(0.25)
        t0 = redis_ms(client)
        out.cpu_catchup = cpu.since()
        wait(args.window)
        t1 = redis_ms(client)
        out.cpu_steady = cpu.since()
        out.rss = [peak_rss_kb(pid) for pid in pids]
        out.behind_ms = behind_ms(client, args.partitions)
    finally:
        for proc, log in procs:
            stop_process(proc)
            log.close()
    window_fires(client, args.partitions, t_a, t0, out.catchup)
    window_fires(client, args.partitions, t0, t1, out.steady)
    return out


def _lateness(fires: Fires) -> str:
    lateness = sorted(fires.lateness)
    if not lateness:
        return "no fires"
    return (
        f"lateness ms p50 {percentile(lateness, 50):.0f} p99 {percentile(lateness, 99):.0f} "
        f"max {lateness[-1]}"
    )


def _cpu(shares: dict[str, float]) -> str:
    each = ", ".join(f"{name} {share * 100:.0f}%" for name, share in shares.items())
    return f"{each}; total {sum(shares.values()) * 100:.0f}% of one core"


def report(r: Round, base: Round | None) -> None:
    spread_s = f"{r.spread_s:.1f}s" if r.spread_s is not None else "not within 60s"
    print(f"-- {r.tickers} ticker process(es): leases spread in {spread_s}")
    ratio = ""
    if base is not None and base.catchup.rate:
        ratio = f" = x{r.catchup.rate / base.catchup.rate:.2f} of one ticker"
    state = "caught up" if r.caught_up else "still behind"
    print(
        f"   catch-up: {len(r.catchup.lateness)} fires in {r.catchup.seconds:.1f}s = "
        f"{r.catchup.rate:,.0f}/s{ratio} ({state}); duplicates {r.catchup.duplicates}"
    )
    print(f"      CPU: {_cpu(r.cpu_catchup)}")
    print(
        f"   steady window: {len(r.steady.lateness)} fires in {r.steady.seconds:.1f}s = "
        f"{r.steady.rate:,.0f}/s; {_lateness(r.steady)}; duplicates {r.steady.duplicates}; "
        f"{r.behind_ms / 1000:.1f}s behind at the end"
    )
    print(f"      CPU: {_cpu(r.cpu_steady)}")
    print("   ticker peak RSS: " + ", ".join(mib(kb) for kb in r.rss))


async def repartition(url: str, partitions: int, to: int) -> None:
    """``cronstream migrate --partitions N`` on what the rounds left, then verify."""
    from redis.asyncio import Redis

    from migrations.keyspace import migrate
    from service.audit.verify import verify
    from service.store.keys import Keyspace

    client = Redis.from_url(url, socket_connect_timeout=30, socket_timeout=600)
    try:
        report = await migrate(client, Keyspace("cs", partitions), partitions=to)
        moved = report.repartitioned
        assert moved is not None
        checked = await verify(client, Keyspace("cs", to))
        print(
            f"re-partitioned {partitions} -> {to}: {moved.entries:,} entries in "
            f"{moved.seconds:.1f}s ({moved.entries / moved.seconds:,.0f} entries/s, with the "
            f"write model and views rebuilt), {moved.renumbered:,} renumbered, {moved.kept:,} "
            f"records kept, {moved.dropped:,} dropped; verify: "
            f"{'intact' if not checked.breaks else checked.breaks[0]} in {checked.seconds:.1f}s"
        )
    finally:
        await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--schedules", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--tickers", default="1,2,4", help="ticker process counts, in turn")
    parser.add_argument("--period", type=int, default=60, help="seconds between a schedule's fires")
    parser.add_argument(
        "--gap",
        type=float,
        default=10.0,
        help="seconds without a ticker before each count (its backlog)",
    )
    parser.add_argument("--catchup", type=float, default=30.0, help="at most this long to catch up")
    parser.add_argument(
        "--window", type=float, default=10.0, help="steady seconds measured per count"
    )
    parser.add_argument("--loaders", type=int, default=2, help="processes creating schedules")
    parser.add_argument("--ttl-ms", type=int, default=5000, help="the tickers' lease TTL")
    parser.add_argument(
        "--repartition",
        type=int,
        default=0,
        metavar="N",
        help="then re-partition the keyspace into N partitions (offline) and time it",
    )
    parser.add_argument("--appendonly", choices=("yes", "no"), default="yes")
    args = parser.parse_args()
    import redis as sync_redis

    print(machine_line())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    counts = [int(c) for c in args.tickers.split(",") if c]
    with (
        tempfile.TemporaryDirectory(prefix="cs-bench-partitions-") as tmp,
        redis_server(Path(tmp) / "redis", appendonly=args.appendonly == "yes") as server,
    ):
        client = sync_redis.Redis.from_url(server.url, socket_timeout=120)
        # none due until well after they are all made: the first count starts on a
        # backlog of ``gap`` seconds, like the others
        start_ms = redis_ms(client) + int((args.schedules / 2500 + 30) * 1000)
        created_s = create(
            server.url, args.schedules, args.partitions, args.period, args.loaders, start_ms
        )
        print(
            f"created {args.schedules:,} schedules in {args.partitions} partitions in "
            f"{created_s:.1f}s ({args.schedules / created_s:,.0f}/s); demand "
            f"{args.schedules / args.period:,.0f} fires/s (every {args.period}s each)"
        )
        print(
            f"each count starts {args.gap:g}s after the last (a backlog of "
            f"{args.schedules / args.period * args.gap:,.0f} fires), catches up (measured: "
            f"fires/s while behind) for at most {args.catchup:g}s, then a {args.window:g}s window"
        )
        if counts:
            first_sweep(args, Path(tmp), server, client)
            late = (redis_ms(client) - start_ms) / 1000
            if late > 0:
                print(f"(the sweep ended {late:.1f}s after the schedules started: a backlog)")
            wait(max(0.0, -late) + args.gap)
        rounds: list[Round] = []
        for n in counts:
            rounds.append(one_round(args, Path(tmp), server, client, n))
            report(rounds[-1], rounds[0] if len(rounds) > 1 else None)
            wait(args.gap)
        info = client.info("memory")
        print(f"redis used_memory {info['used_memory'] / 2**20:,.0f} MiB")
        if args.repartition:
            asyncio.run(repartition(server.url, args.partitions, args.repartition))
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        client.close()
    duplicates = sum(r.catchup.duplicates + r.steady.duplicates for r in rounds)
    return 0 if duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
