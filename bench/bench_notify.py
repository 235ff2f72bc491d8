"""Notifications: events turned into notifications per second, and delivery latency.

Starts a redis-server on 127.0.0.1 (AOF off), a local webhook receiver in this process,
and ``serve --roles worker`` as a process (its notifier reads the log in the consumer
group ``notify`` and its delivery loop sends). A channel (a signed webhook to the
receiver, at the highest rate a channel may have) and a rule on ``run_failed`` without
a cooldown are stored first. Then ``RunFailed`` events are appended to partition 0's log
directly (``XADD``, as the run script writes them), with ``--noise`` events no rule
watches (``RunSucceeded``) after each:

- burst: ``--burst`` failures appended at once; notifications sent per second (first
  append to last arrival), events read per second, and latency p50/p99 (append to
  arrival at the receiver, queueing included);
- paced: ``--paced`` failures at ``--rate`` a second; latency p50/p99/max;
- flapping: the rule given a one-hour cooldown, ``--flaps`` failures of one schedule
  appended at once: decisions recorded per second (one sent, the rest suppressed).

    python bench/bench_notify.py [--burst 2000] [--noise 4] [--paced 300] [--rate 50] [--flaps 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from aiohttp import web
from redis.asyncio import Redis

from bench.common import (
    Deadline,
    machine_line,
    percentile,
    redis_server,
    start_service,
    stop_process,
)
from service.domain.notifications import MAX_RATE_PER_MINUTE, ChannelConfig, RuleConfig
from service.store.keys import Keyspace
from service.store.notifications import NotificationStore
from service.store.secrets import generate_key

WAIT_S = 300.0


class Receiver:
    """Counts webhook arrivals: run id -> arrival time (ms, this machine's clock)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        payload = orjson.loads(await request.read())
        self.arrived.setdefault(payload.get("run_id", ""), time.time() * 1000)
        self.changed.set()
        return web.Response(status=204)


async def start_receiver(receiver: Receiver) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/hook"


async def append(
    redis: Redis, keys: Keyspace, runs: list[str], noise: int, sid: str
) -> dict[str, int]:
    """Append a RunFailed per run (and ``noise`` RunSucceeded after each); append ms by run."""
    appended: dict[str, int] = {}
    async with redis.pipeline(transaction=False) as pipe:
        for run_id in runs:
            data = orjson.dumps({"run_id": run_id, "attempt": 1, "error": "HTTP 500"})
            pipe.xadd(
                keys.log(0), {"type": "RunFailed", "v": 1, "sid": sid, "data": data, "meta": "{}"}
            )
            for n in range(noise):
                other = orjson.dumps({"run_id": f"{run_id}-ok{n}", "attempt": 1})
                pipe.xadd(
                    keys.log(0),
                    {"type": "RunSucceeded", "v": 1, "sid": sid, "data": other, "meta": "{}"},
                )
        ids = await pipe.execute()
    for run_id, entry in zip(runs, ids[:: noise + 1], strict=True):
        appended[run_id] = int(entry.decode().split("-")[0])
    return appended


async def arrived(receiver: Receiver, runs: list[str]) -> None:
    deadline = Deadline(WAIT_S)
    while not all(r in receiver.arrived for r in runs):
        if deadline.expired():
            raise RuntimeError(f"{sum(r in receiver.arrived for r in runs)}/{len(runs)} arrived")
        receiver.changed.clear()
        try:
            await asyncio.wait_for(receiver.changed.wait(), 1.0)
        except TimeoutError:
            pass


def latencies(receiver: Receiver, appended: dict[str, int]) -> list[float]:
    return [receiver.arrived[r] - at for r, at in appended.items()]


def line(name: str, values: list[float]) -> str:
    return (
        f"{name}: latency p50 {percentile(values, 50):.1f} ms, "
        f"p99 {percentile(values, 99):.1f} ms, max {max(values):.1f} ms "
        f"({len(values)} notifications)"
    )


async def burst(redis: Redis, keys: Keyspace, receiver: Receiver, count: int, noise: int) -> None:
    runs = [f"burst-{n}" for n in range(count)]
    started = time.time() * 1000
    appended = await append(redis, keys, runs, noise, "burst")
    await arrived(receiver, runs)
    seconds = (max(receiver.arrived[r] for r in runs) - started) / 1000
    events = count * (noise + 1)
    print(
        f"burst: {count} notifications of {events} events in {seconds:.2f} s: "
        f"{count / seconds:.0f} notifications/s, {events / seconds:.0f} events/s"
    )
    print(line("burst", latencies(receiver, appended)))


async def paced(redis: Redis, keys: Keyspace, receiver: Receiver, count: int, rate: float) -> None:
    appended: dict[str, int] = {}
    start = time.monotonic()
    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the load, not waiting for a condition
        appended |= await append(redis, keys, [f"paced-{n}"], 0, "paced")
    await arrived(receiver, list(appended))
    print(line(f"paced at {rate:g}/s", latencies(receiver, appended)))


async def flapping(redis: Redis, keys: Keyspace, store: NotificationStore, count: int) -> None:
    rule = RuleConfig(on="run_failed", channels=["hook"], cooldown_s=3600)
    await store.put_rule("failed", rule, int(time.time() * 1000))
    before = int(await redis.zcard(keys.notify("records")))
    started = time.perf_counter()
    await append(redis, keys, [f"flap-{n}" for n in range(count)], 0, "flapping")
    deadline = Deadline(WAIT_S)
    while int(await redis.zcard(keys.notify("records"))) < before + count:
        if deadline.expired():
            raise RuntimeError("flapping: not every decision was recorded in time")
        await asyncio.sleep(0.01)  # polling the record count against the deadline above
    seconds = time.perf_counter() - started
    print(
        f"flapping: {count} failures of one schedule decided in {seconds:.2f} s: "
        f"{count / seconds:.0f} decisions/s"
    )


async def run(args: argparse.Namespace, redis_url: str, work_dir: Path) -> None:
    keys = Keyspace()
    redis = Redis.from_url(redis_url)
    receiver = Receiver()
    runner, url = await start_receiver(receiver)
    # the service first: it stamps the keyspace's version before anything is written
    service = start_service(redis_url, work_dir, roles="worker")
    try:
        store = NotificationStore(redis, keys, os.environ["CRONSTREAM_SECRET_KEY"])
        now = int(time.time() * 1000)
        target = {"type": "webhook", "url": url}
        hook = ChannelConfig.model_validate(
            {"target": target, "rate_per_minute": MAX_RATE_PER_MINUTE}
        )
        await store.put_channel("hook", hook, now)
        rule = RuleConfig(on="run_failed", channels=["hook"], cooldown_s=0)
        await store.put_rule("failed", rule, now)
        await append(redis, keys, ["warm-up"], 0, "warm-up")
        await arrived(receiver, ["warm-up"])  # the group is made and a send went through
        await burst(redis, keys, receiver, args.burst, args.noise)
        await paced(redis, keys, receiver, args.paced, args.rate)
        await flapping(redis, keys, store, args.flaps)
    finally:
        stop_process(service.process)
        await runner.cleanup()
        await redis.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--noise", type=int, default=4, help="unwatched events after each failure")
    parser.add_argument("--paced", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--flaps", type=int, default=2000)
    args = parser.parse_args()
    if args.burst + args.paced > MAX_RATE_PER_MINUTE:
        parser.error(
            f"--burst + --paced: at most {MAX_RATE_PER_MINUTE} (a channel's rate a minute)"
        )
    print(machine_line())
    os.environ["CRONSTREAM_ALLOW_PRIVATE_TARGETS"] = "1"  # the receiver is on 127.0.0.1
    os.environ.setdefault("CRONSTREAM_SECRET_KEY", generate_key())
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_server(Path(tmp) / "redis", appendonly=False) as server,
    ):
        asyncio.run(run(args, server.url, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
