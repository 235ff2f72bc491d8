"""Replay speed (the whole log folded into memory) and SSE delivery throughput.

Starts a redis-server on 127.0.0.1 (AOF off) and fills partition 0's log with
``--events`` entries the way the scripts write them (``bench_archive.fill``:
schedules created, then fires of target-less runs with the occasional pause and
resume, chain fields included; pauses in the old v1 shape, so replay upcasts).

- replay: ``service.audit.replay.replay`` at the log's end, every schedule —
  read, decode, upcast and fold through ``projections.schedules.apply`` into
  memory; events/s and the number of schedules rebuilt;
- SSE: starts the service as a process (``serve --roles api``), opens
  ``GET /v1/events/stream`` from the start of the log with one client and counts
  events until the ``--sse-events``-th arrives; events/s.

    python bench/bench_replay.py [--events 1000000] [--schedules 1000] [--sse-events 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from redis.asyncio import Redis

from bench.bench_archive import fill
from bench.common import (
    ServiceProcess,
    machine_line,
    redis_server,
    start_service,
    stop_process,
)
from service.audit.replay import Point, replay
from service.store.keys import Keyspace

SSE_TIMEOUT_S = 600.0


async def bench_replay(redis: Redis, keys: Keyspace) -> tuple[int, float, int]:
    started = time.perf_counter()
    result = await replay(redis, keys, Point())
    seconds = time.perf_counter() - started
    return result.events, seconds, len(result.live_schedules())


def start_api(redis_url: str, work_dir: Path) -> ServiceProcess:
    """``cronstream serve --roles api``: only the API, so the figure is the stream's,
    not that of a projector, ticker and worker catching up with a million events."""
    return start_service(redis_url, work_dir, roles="api")


async def bench_sse(base_url: str, count: int) -> tuple[int, float, float]:
    """(events received, seconds to receive them, seconds to the first one)."""
    received = 0
    first = 0.0
    timeout = aiohttp.ClientTimeout(total=SSE_TIMEOUT_S, sock_read=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        started = time.perf_counter()
        async with session.get(base_url + "/v1/events/stream?after=0-0") as response:
            assert response.status == 200, await response.text()
            async for line in response.content:
                if line.startswith(b"data: "):
                    received += 1
                    if received == 1:
                        first = time.perf_counter() - started
                    if received >= count:
                        break
        seconds = time.perf_counter() - started
    return received, seconds, first


async def main_async(args: argparse.Namespace) -> int:
    keys = Keyspace()
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        work = Path(tmp)
        with redis_server(work / "redis", appendonly=False) as server:
            redis = Redis.from_url(server.url, socket_timeout=60)
            try:
                started = time.perf_counter()
                written = await fill(redis, keys, args.events, args.schedules)
                fill_s = time.perf_counter() - started
                await redis.hset(keys.meta, "version", 2)
                print(f"filled {written:,} events in {fill_s:.1f}s")
                events, seconds, schedules = await bench_replay(redis, keys)
                print(
                    f"replay: {events:,} events folded into {schedules:,} schedules in "
                    f"{seconds:.2f}s = {events / seconds:,.0f} events/s"
                )
                service = start_api(server.url, work)
                try:
                    want = min(args.sse_events, written)
                    got, sse_s, first_s = await bench_sse(service.base_url, want)
                finally:
                    stop_process(service.process)
                print(
                    f"sse: {got:,} events to one client in {sse_s:.2f}s = "
                    f"{got / sse_s:,.0f} events/s (first event after {first_s * 1000:.0f} ms)"
                )
                print(
                    f"RESULT replay_events={events} replay_s={seconds:.3f} "
                    f"replay_eps={events / seconds:.0f} sse_events={got} sse_s={sse_s:.3f} "
                    f"sse_eps={got / sse_s:.0f}"
                )
            finally:
                await redis.aclose()
    print(machine_line())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--sse-events", type=int, default=200_000)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
