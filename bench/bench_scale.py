"""Scale benchmark: one ticker process under a steady load and under a thundering herd,
and Redis memory per idle schedule.

1. memory: N schedules created through the command path, the views built by a
   projector process; Redis ``used_memory`` before and after, divided by N, and a
   breakdown by kind of key (``MEMORY USAGE`` of a sample of each kind).
2. steady: the same N schedules, each due every 5 s (interval offsets on a 5 ms grid,
   so 1,000 distinct specs), workflow target ``none``; one ``serve --roles ticker``
   and one ``serve --roles projector`` process. Over a measured window: fires per
   second, lateness (append time, the stream id, minus the nominal time)
   p50/p99/max, duplicates, misses, the projector's lag, and where the time goes
   (CPU seconds per second of the ticker and of Redis, script time per fire).
3. herd: a fresh Redis, N schedules every hour all due at one instant T; the
   ticker and projector running. Time from T until the last fire is appended, and
   until the projector has applied it (the last view updated).

``--ticker-tree DIR`` runs the ticker process from another checkout of cronstream
(e.g. an older commit, for before/after figures); everything else runs from this one.

    python bench/bench_scale.py                          # 100,000 schedules, all parts
    python bench/bench_scale.py --schedules 20000 --seconds 20
    python bench/bench_scale.py --parts steady --ticker-tree /tmp/cronstream-before
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO_ROOT,
    Deadline,
    cpu_seconds,
    machine_line,
    mib,
    peak_rss_kb,
    percentile,
    redis_server,
    stop_process,
)

PERIOD_MS = 5000
GRID_MS = 5  # offsets on a 5 ms grid: 1,000 distinct specs per 5 s
HOUR_MS = 3_600_000
LOG = "cs:{0}:log"
DUE = "cs:{0}:due"
CHECKPOINT = "cs:{0}:proj:views"


def offset_of(i: int, count: int) -> int:
    return ((i * PERIOD_MS) // count) // GRID_MS * GRID_MS


def sid_of(i: int) -> str:
    return f"s{i:07d}"


# -- setup -------------------------------------------------------------------------------


async def create(url: str, count: int, spec_of: Callable[[int], dict[str, Any]]) -> float:
    """N schedules through the command path (as the API would), at a bounded concurrency;
    returns the seconds it took."""
    from redis.asyncio import Redis

    from migrations.keyspace import check_keyspace
    from service.commands import (
        SCHEDULES,
        WORKFLOWS,
        CommandService,
        ProjectionWaiter,
        RequestContext,
    )
    from service.domain import schedule as sched
    from service.domain import workflow as wf
    from service.store.eventstore import EventStore
    from service.store.keys import Keyspace

    keys = Keyspace()
    client = Redis.from_url(url, socket_connect_timeout=30, socket_timeout=60, max_connections=80)
    await check_keyspace(client, keys)
    commands = CommandService(
        EventStore(client, keys), ProjectionWaiter(client, keys), wait_timeout_s=0
    )
    target = wf.WorkflowConfig.model_validate({"target": {"type": "none"}})
    await commands.execute(WORKFLOWS, "w", wf.PutWorkflow("w", target), RequestContext())
    gate = asyncio.Semaphore(64)
    started = time.perf_counter()

    async def one(i: int) -> None:
        config = sched.ScheduleConfig.model_validate(
            {"workflow_id": "w", "spec": spec_of(i), "policy": {"catchup": "all"}}
        )
        async with gate:
            await commands.execute(
                SCHEDULES, sid_of(i), sched.CreateSchedule(sid_of(i), config), RequestContext()
            )

    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed


@contextmanager
def serve(url: str, roles: str, work: Path, tree: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m service serve --roles ROLES`` from ``tree``, stopped on exit."""
    env = {**os.environ, "REDIS_URL": url, "PYTHONPATH": str(tree)}
    log = open(work / f"{roles}.log", "wb")
    args = ["serve", "--roles", roles, "--log-level", "WARNING", "--data-dir", str(work / roles)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", *args],
        cwd=tree,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        stop_process(proc)
        log.close()


def redis_ms(client: Any) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def wait(seconds: float) -> None:
    deadline = Deadline(seconds)
    while not deadline.expired():
        time.sleep(min(0.2, deadline.remaining()))


def projector_lag_ms(client: Any) -> int:
    """Age of the oldest log entry the views have not applied (0: caught up)."""
    raw = client.hget(CHECKPOINT, "position")
    start = "(" + raw.decode() if raw else "-"
    pending = client.xrange(LOG, min=start, count=1)
    if not pending:
        return 0
    return max(0, redis_ms(client) - int(pending[0][0].split(b"-")[0]))


def wait_projected(client: Any, timeout_s: float) -> bool:
    deadline = Deadline(timeout_s)
    while not deadline.expired():
        if projector_lag_ms(client) == 0:
            return True
        time.sleep(0.05)
    return False


# -- memory ------------------------------------------------------------------------------

KINDS = (
    ("state hash", b"cs:{0}:state:schedule:"),
    ("event index", b"cs:{0}:events:schedule:"),
    ("view record", b"cs:{0}:view:schedule:"),
    ("view indexes", b"cs:{0}:view:schedules"),
    ("idempotency records (expire in 24 h)", b"cs:{0}:idem:"),
)
WHOLE = (("log (ScheduleCreated)", LOG), ("due index", DUE), ("hwm", "cs:{0}:hwm"))


def memory(args: argparse.Namespace, work: Path) -> float:
    """Redis memory per idle schedule (a yearly spec: created, seen by the ticker, in the
    views, waiting): the whole delta, then by kind of key. Returns the creation rate."""
    import redis as sync_redis

    with redis_server(work / "redis-memory", appendonly=True) as server:
        client = sync_redis.Redis.from_url(server.url)
        configure(client, args.redis_config)
        before = int(client.info("memory")["used_memory"])
        yearly = {"cron": ["0 0 1 1 *"]}
        with (
            serve(server.url, "projector", work, REPO_ROOT),
            serve(server.url, "ticker", work, args.ticker_tree),
        ):
            created_s = asyncio.run(create(server.url, args.schedules, lambda _i: yearly))
            if not wait_projected(client, 300):
                print("memory: the projector did not catch up in 300 s")
            wait(2.0)  # the ticker sees the last ones
        print(
            f"created {args.schedules} schedules in {created_s:.1f}s "
            f"({args.schedules / created_s:,.0f}/s)"
        )
        used = int(client.info("memory")["used_memory"])
        count = args.schedules
        print(f"memory: {count} idle schedules, used_memory +{(used - before) / 2**20:.1f} MiB")
        print(f"  per schedule, every key: {(used - before) / count:.0f} B")
        parts = by_kind(client, count)
        for name, per in parts.items():
            print(f"  {name}: {per:.0f} B/schedule")
        idle = sum(parts[k] for k in ("state hash", "due index", "view record", "view indexes"))
        print(f"  state hash + due index entry + views: {idle:.0f} B/schedule")
        client.close()
    return float(args.schedules / created_s)


def by_kind(client: Any, count: int) -> dict[str, float]:
    """Bytes per schedule of each kind of key: MEMORY USAGE of up to 2,000 of a kind's
    keys, times how many there are."""
    sampled: dict[str, list[int]] = {name: [] for name, _ in KINDS}
    keys_of: dict[str, int] = dict.fromkeys(sampled, 0)
    for key in client.scan_iter(count=5000):
        for name, prefix in KINDS:
            if key.startswith(prefix):
                keys_of[name] += 1
                if len(sampled[name]) < 2000:
                    sampled[name].append(int(client.memory_usage(key, samples=0) or 0))
                break
    parts = {
        name: sum(values) / len(values) * keys_of[name] / count
        for name, values in sampled.items()
        if values
    }
    for name, key in WHOLE:
        parts[name] = int(client.memory_usage(key, samples=0) or 0) / count
    return parts


# -- steady ------------------------------------------------------------------------------


def analyse(client: Any, count: int, t0: int, t1: int) -> dict[str, Any]:
    """Lateness, duplicates and misses of every nominal time in [t0, t1)."""
    lateness: list[int] = []
    seen: dict[str, set[int]] = {}
    duplicates = appended = 0
    start = f"{t0 - 60_000}-0"
    while True:
        entries = client.xrange(LOG, min=start, count=20_000)
        if not entries:
            break
        for eid, fields in entries:
            if fields[b"type"] != b"ScheduleFired":
                continue
            nominal = int(orjson.loads(fields[b"data"])["fire_id"].split(":")[1])
            appended += t0 <= int(eid.split(b"-")[0]) < t1
            if t0 <= nominal < t1:
                got = seen.setdefault(fields[b"sid"].decode(), set())
                duplicates += nominal in got
                got.add(nominal)
                lateness.append(int(eid.split(b"-")[0]) - nominal)
        ms, seq = entries[-1][0].decode().split("-")
        start = f"{ms}-{int(seq) + 1}"
    missed = 0
    for i in range(count):
        offset = offset_of(i, count)
        first = ((t0 - offset + PERIOD_MS - 1) // PERIOD_MS) * PERIOD_MS + offset
        missed += len(set(range(first, t1, PERIOD_MS)) - seen.get(sid_of(i), set()))
    return {
        "lateness": sorted(lateness),
        "duplicates": duplicates,
        "missed": missed,
        "appended": appended,
    }


def redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def script_usec(client: Any) -> tuple[int, int]:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def script_names() -> dict[str, str]:
    """The SHA1 of this checkout's ticker scripts, to name them in the slow log."""
    import hashlib

    from service.store.fires import fire_source
    from service.store.scripts import source

    names = {"fire.lua": fire_source(), "due.lua": source("service.ticker", "due.lua")}
    return {hashlib.sha1(text.encode()).hexdigest(): name for name, text in names.items()}


def slow_calls(client: Any) -> str:
    """Redis calls of 10 ms or more since the slow log was reset, by script."""
    names = script_names()
    found: dict[str, list[int]] = {}
    for entry in client.slowlog_get(1024):
        raw = entry["command"]
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        command = text.split()
        name = command[0].lower() if command else "?"
        if name == "evalsha" and len(command) > 1:
            name = names.get(command[1], "other script (the projector's, or an older ticker's)")
        found.setdefault(name, []).append(int(entry["duration"]) // 1000)
    if not found:
        return "none"
    return ", ".join(f"{name} {len(ms)} (max {max(ms)} ms)" for name, ms in sorted(found.items()))


def steady(args: argparse.Namespace, work: Path) -> float:
    """The ticker (and projector) running, then N schedules every 5 s created; after a
    warm-up, a measured window. Returns the creation rate."""
    import redis as sync_redis

    def every_5s(i: int) -> dict[str, Any]:
        return {"intervals": [{"every": "5s", "offset": f"{offset_of(i, args.schedules)}ms"}]}

    with redis_server(work / "redis-steady", appendonly=True) as server:
        client = sync_redis.Redis.from_url(server.url)
        configure(client, args.redis_config)
        with contextlib.ExitStack() as processes:
            if args.projector:
                processes.enter_context(serve(server.url, "projector", work, REPO_ROOT))
            ticker = processes.enter_context(serve(server.url, "ticker", work, args.ticker_tree))
            created_s = asyncio.run(create(server.url, args.schedules, every_5s))
            print(
                f"created {args.schedules} schedules in {created_s:.1f}s "
                f"({args.schedules / created_s:,.0f}/s), the ticker firing them meanwhile"
            )
            wait(args.warmup)
            measured = window(client, ticker.pid, args)
        report(client, args, measured)
        client.close()
    return float(args.schedules / created_s)


def window(client: Any, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """What happens over the measured window: times, CPU, script time, projector lag."""
    client.config_set("slowlog-log-slower-than", 10_000)
    client.slowlog_reset()
    t0, cpu0 = redis_ms(client), cpu_seconds(pid) or 0.0
    rcpu0, (calls0, usec0) = redis_cpu(client), script_usec(client)
    lags: list[int] = []
    deadline = Deadline(args.seconds)
    while not deadline.expired():
        if args.projector:
            lags.append(projector_lag_ms(client))
        time.sleep(min(0.5, deadline.remaining()))
    t1, cpu1 = redis_ms(client), cpu_seconds(pid) or 0.0
    rcpu1, (calls1, usec1) = redis_cpu(client), script_usec(client)
    slow = slow_calls(client)
    wait(3.0)  # the window's last nominal times land
    return {
        "t0": t0,
        "t1": t1,
        "ticker_cpu": cpu1 - cpu0,
        "redis_cpu": rcpu1 - rcpu0,
        "calls": calls1 - calls0,
        "usec": usec1 - usec0,
        "lags": lags,
        "slow": slow,
        "rss": peak_rss_kb(pid),
    }


def report(client: Any, args: argparse.Namespace, m: dict[str, Any]) -> None:
    result = analyse(client, args.schedules, m["t0"], m["t1"])
    lateness, seconds = result["lateness"], (m["t1"] - m["t0"]) / 1000
    fires, lags = len(lateness), m["lags"]
    print(
        f"steady: {args.schedules} schedules every 5s, 1 ticker process"
        + (", 1 projector process" if args.projector else ", no projector")
        + f", window {seconds:.1f}s"
        + (f", ticker from {args.ticker_tree}" if args.ticker_tree != REPO_ROOT else "")
    )
    print(
        f"  fires of the window's times {fires} = {fires / seconds:,.0f}/s (due: "
        f"{args.schedules / 5:,.0f}/s); duplicates {result['duplicates']}; missed "
        f"{result['missed']}; fires appended in the window (any time's) "
        f"{result['appended'] / seconds:,.0f}/s"
    )
    if lateness:
        print(
            f"  lateness ms: p50 {percentile(lateness, 50):.0f}  p99 "
            f"{percentile(lateness, 99):.0f}  max {lateness[-1]}"
        )
    if lags:
        print(
            f"  projector lag ms (sampled every 0.5 s): p50 {percentile(lags, 50):.0f}  "
            f"max {max(lags)}"
        )
    print(
        f"  where the time goes: ticker CPU {m['ticker_cpu'] / seconds:.2f} s/s, "
        f"redis CPU {m['redis_cpu'] / seconds:.2f} s/s; Redis ran scripts "
        f"{m['usec'] / max(fires, 1):.0f} us per fire in {m['calls'] / seconds:,.0f} calls/s; "
        f"ticker peak RSS {mib(m['rss'])}"
    )
    print(f"  redis calls of 10 ms or more: {m['slow']}")


# -- herd --------------------------------------------------------------------------------


def herd(args: argparse.Namespace, work: Path, rate: float) -> None:
    """N schedules all due at one instant T, chosen after the time their creation takes."""
    import redis as sync_redis

    with redis_server(work / "redis-herd", appendonly=True) as server:
        client = sync_redis.Redis.from_url(server.url)
        configure(client, args.redis_config)
        lead_ms = int((args.schedules / rate * 2 + 20) * 1000)
        at = redis_ms(client) + lead_ms
        spec = {"intervals": [{"every": "1h", "offset": f"{at % HOUR_MS}ms"}]}
        with contextlib.ExitStack() as processes:
            if args.projector:
                processes.enter_context(serve(server.url, "projector", work, REPO_ROOT))
            ticker = processes.enter_context(serve(server.url, "ticker", work, args.ticker_tree))
            asyncio.run(create(server.url, args.schedules, lambda _i: spec))
            ahead = at - redis_ms(client)
            print(
                f"herd: {args.schedules} schedules due at one instant, "
                f"created {ahead / 1000:.1f}s ahead of it"
            )
            if ahead < 0:
                print("  the creation overran the instant: the figures below are not the herd's")
            cpu = herd_cpu(client, ticker.pid, at, lead_ms / 1000 + 120)
            if cpu is None:
                print("  not all fired within 120 s of the instant")
                return
            fired, schedules, last_id = herd_fires(client, at)
            applied = Deadline(120)
            while args.projector and not applied.expired():
                if projected_past(client, last_id):
                    break
                time.sleep(0.02)
            viewed = redis_ms(client)
        last_fire = int(last_id.split(b"-")[0]) if last_id else at
        print(
            f"  fired {fired} (duplicates {fired - schedules}, "
            f"missed {args.schedules - schedules}); the last fire appended "
            f"{(last_fire - at) / 1000:.2f}s after the instant"
            + (
                f", the last view updated {(viewed - at) / 1000:.2f}s after it"
                if args.projector
                else " (no projector)"
            )
        )
        per = 1e6 / max(fired, 1)
        print(
            f"  CPU per fire until the last: ticker {cpu[0] * per:.0f} us, redis "
            f"{cpu[1] * per:.0f} us"
            + (" (the projector's calls too)" if args.projector else "")
            + (f" (ticker from {args.ticker_tree})" if args.ticker_tree != REPO_ROOT else "")
        )
        client.close()


def herd_cpu(client: Any, pid: int, at: int, timeout_s: float) -> tuple[float, float] | None:
    """Wait for the instant, then until nothing is due at it any more: the CPU seconds
    the ticker and Redis used meanwhile (None: not all fired in time)."""
    deadline = Deadline(timeout_s)
    while redis_ms(client) < at and not deadline.expired():
        time.sleep(0.005)
    ticker0, redis0 = cpu_seconds(pid) or 0.0, redis_cpu(client)
    while client.zcount(DUE, "-inf", at):
        if deadline.expired():
            return None
        time.sleep(0.01)
    return (cpu_seconds(pid) or 0.0) - ticker0, redis_cpu(client) - redis0


def herd_fires(client: Any, at: int) -> tuple[int, int, bytes]:
    """The herd's fires: how many, of how many schedules, and the last one's entry id."""
    count, last = 0, b""
    sids: set[bytes] = set()
    start = f"{at}-0"
    while True:
        entries = client.xrange(LOG, min=start, count=20_000)
        if not entries:
            return count, len(sids), last
        for eid, fields in entries:
            if fields[b"type"] == b"ScheduleFired":
                count += 1
                sids.add(fields[b"sid"])
                last = eid
        ms, seq = entries[-1][0].decode().split("-")
        start = f"{ms}-{int(seq) + 1}"


def projected_past(client: Any, entry_id: bytes) -> bool:
    raw = client.hget(CHECKPOINT, "position")
    if not raw:
        return False
    have = tuple(int(x) for x in raw.split(b"-"))
    want = tuple(int(x) for x in entry_id.split(b"-"))
    return have >= want


def configure(client: Any, settings: list[str]) -> None:
    for setting in settings:
        name, _, value = setting.partition("=")
        client.config_set(name, value)
        print(f"redis: CONFIG SET {name} {value}")


# -- main --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="steady: measured window")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--parts", default="memory,steady,herd")
    parser.add_argument("--ticker-tree", type=Path, default=REPO_ROOT)
    parser.add_argument(
        "--no-projector",
        dest="projector",
        action="store_false",
        help="steady and herd: the ticker alone (no projector competing for Redis and CPU)",
    )
    parser.add_argument(
        "--redis-config",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="CONFIG SET on the benchmark's Redis, e.g. hash-max-listpack-value=1024",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(machine_line())
    rate = 1500.0  # schedules created per second, until measured
    with tempfile.TemporaryDirectory(prefix="cs-bench-scale-") as tmp:
        work = Path(tmp)
        if "memory" in parts:
            rate = memory(args, work)
        if "steady" in parts:
            rate = min(rate, steady(args, work))
        if "herd" in parts:
            herd(args, work, rate)
    print(machine_line().replace("machine:", "after:"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
