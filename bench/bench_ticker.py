"""Ticker benchmark: fire lateness, duplicates and misses, sustained fires per second.

N schedules, each due every 5 s, their offsets spread evenly over the period, a
workflow with target ``none`` (the run is recorded as succeeded at once, so the
figures are the ticker's alone). One or more ``cronstream serve --roles ticker``
processes compete for the lease. Lateness is the fire's append time (its stream id,
Redis's clock) minus its nominal time.

    python bench/bench_ticker.py --schedules 10000 --tickers 1
    python bench/bench_ticker.py --schedules 100000 --tickers 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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

PERIOD_MS = 5000


async def create(url: str, count: int, concurrency: int = 64) -> float:
    from redis.asyncio import Redis

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
    client = Redis.from_url(
        url, socket_connect_timeout=30, socket_timeout=60, max_connections=concurrency + 8
    )
    from migrations.keyspace import check_keyspace

    await check_keyspace(client, keys)  # stamp the fresh keyspace, as serve would
    commands = CommandService(
        EventStore(client, keys), ProjectionWaiter(client, keys), wait_timeout_s=0
    )
    await commands.execute(
        WORKFLOWS,
        "w",
        wf.PutWorkflow("w", wf.WorkflowConfig.model_validate({"target": {"type": "none"}})),
        RequestContext(),
    )
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()

    async def one(i: int) -> None:
        offset = (i * PERIOD_MS) // count
        config = sched.ScheduleConfig.model_validate(
            {
                "workflow_id": "w",
                "spec": {"intervals": [{"every": "5s", "offset": f"{offset}ms"}]},
                "policy": {"catchup": "all", "overlap": "allow_all"},
            }
        )
        async with gate:
            await commands.execute(
                SCHEDULES, f"s{i:06d}", sched.CreateSchedule(f"s{i:06d}", config), RequestContext()
            )

    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed


def redis_ms(client: object) -> int:
    seconds, micros = client.time()  # type: ignore[attr-defined]
    return int(seconds) * 1000 + int(micros) // 1000


def analyse(client: object, count: int, t0: int, t1: int) -> dict[str, object]:
    """Lateness, duplicates and misses of every nominal time in [t0, t1)."""
    lateness: list[int] = []
    seen: dict[str, set[int]] = {}
    duplicates = 0
    start = f"{t0 - 60_000}-0"
    while True:
        entries = client.xrange("cs:{0}:log", min=start, count=20_000)  # type: ignore[attr-defined]
        if not entries:
            break
        for eid, fields in entries:
            if fields[b"type"] != b"ScheduleFired":
                continue
            data = orjson.loads(fields[b"data"])
            nominal = int(data["fire_id"].split(":")[1])
            if not t0 <= nominal < t1:
                continue
            sid = fields[b"sid"].decode()
            got = seen.setdefault(sid, set())
            if nominal in got:
                duplicates += 1
            got.add(nominal)
            lateness.append(int(eid.split(b"-")[0]) - nominal)
        last = entries[-1][0].decode()
        ms, seq = last.split("-")
        start = f"{ms}-{int(seq) + 1}"
    missed = 0
    for i in range(count):
        offset = (i * PERIOD_MS) // count
        first = ((t0 - offset + PERIOD_MS - 1) // PERIOD_MS) * PERIOD_MS + offset
        expected = set(range(first, t1, PERIOD_MS))
        missed += len(expected - seen.get(f"s{i:06d}", set()))
    return {"lateness": lateness, "duplicates": duplicates, "missed": missed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--tickers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=8.0)
    args = parser.parse_args()
    import redis as sync_redis

    print(machine_line())
    with (
        tempfile.TemporaryDirectory(prefix="cs-bench-ticker-") as tmp,
        redis_server(Path(tmp) / "redis", appendonly=True) as server,
    ):
        created_s = asyncio.run(create(server.url, args.schedules))
        print(
            f"created {args.schedules} schedules in {created_s:.1f}s "
            f"({args.schedules / created_s:,.0f}/s)"
        )
        client = sync_redis.Redis.from_url(server.url)
        env = {**os.environ, "REDIS_URL": server.url, "PYTHONPATH": str(REPO_ROOT)}
        procs = []
        for i in range(args.tickers):
            log = open(Path(tmp) / f"ticker{i}.log", "wb")
            procs.append(
                (
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "service",
                            "serve",
                            "--roles",
                            "ticker",
                            "--log-level",
                            "WARNING",
                            "--data-dir",
                            str(Path(tmp) / f"d{i}"),
                        ],
                        cwd=REPO_ROOT,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    ),
                    log,
                )
            )
        try:
            warm = Deadline(args.warmup)
            while not warm.expired():
                time.sleep(min(0.2, warm.remaining()))
            t0 = redis_ms(client)
            window = Deadline(args.seconds)
            while not window.expired():
                time.sleep(min(0.2, window.remaining()))
            t1 = redis_ms(client)
            settle = Deadline(3.0)  # fires of the window's last nominal times land
            while not settle.expired():
                time.sleep(min(0.2, settle.remaining()))
            rss = [peak_rss_kb(p.pid) for p, _ in procs]
        finally:
            for proc, log in procs:
                stop_process(proc)
                log.close()
        result = analyse(client, args.schedules, t0, t1)
        lateness = sorted(result["lateness"])  # type: ignore[arg-type]
        fires = len(lateness)
        seconds = (t1 - t0) / 1000
        print(
            f"ticker: {args.schedules} schedules every 5s, {args.tickers} ticker process(es), "
            f"window {seconds:.1f}s"
        )
        print(
            f"fires {fires} = {fires / seconds:,.0f}/s sustained; "
            f"duplicates {result['duplicates']}; missed {result['missed']}"
        )
        if lateness:
            print(
                f"lateness ms: p50 {percentile(lateness, 50):.1f}  "
                f"p99 {percentile(lateness, 99):.1f}  max {lateness[-1]}"
            )
        print("ticker peak RSS: " + ", ".join(mib(r) for r in rss))
        info = client.info("memory")
        print(f"redis used_memory {info['used_memory'] / 2**20:.1f} MiB")
        client.close()
    return 0 if result["duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
