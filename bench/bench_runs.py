"""Run execution benchmark: runs per second and fire-to-start latency.

Runs are queued straight into the run queue (as a fire queues them) for a workflow
whose target is a no-op Python handler or a local HTTP endpoint; one or two
``cronstream serve --roles worker`` processes execute them. Latency is RunStarted's
append time minus RunQueued's (both Redis's clock); throughput is runs finished per
second for a burst.

    python bench/bench_runs.py                 # python and http, 1 and 2 workers
    python bench/bench_runs.py --burst 5000 --rate 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO_ROOT,
    Deadline,
    free_port,
    machine_line,
    percentile,
    redis_server,
    stop_process,
)


def http_target() -> tuple[str, threading.Event]:
    """A minimal HTTP/1.1 endpoint answering 200 to everything, in a thread."""
    from aiohttp import web

    port = free_port()
    stop = threading.Event()
    ready = threading.Event()

    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def serve() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.to_thread(stop.wait)
        await runner.cleanup()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    assert ready.wait(10)
    return f"http://127.0.0.1:{port}/hook", stop


async def queue_runs(url: str, workflow: dict[str, Any], count: int, rate: float | None) -> None:
    from redis.asyncio import Redis

    from service.commands import WORKFLOWS, CommandService, ProjectionWaiter, RequestContext
    from service.domain import workflow as wf
    from service.domain.addresses import OutboundPolicy
    from service.domain.ids import new_id
    from service.store.eventstore import EventStore
    from service.store.keys import Keyspace
    from service.store.runs import RunStore

    keys = Keyspace()
    client = Redis.from_url(url, max_connections=64)
    from migrations.keyspace import check_keyspace

    await check_keyspace(client, keys)  # stamp the fresh keyspace, as serve would
    commands = CommandService(
        EventStore(client, keys), ProjectionWaiter(client, keys), wait_timeout_s=0
    )
    await commands.execute(
        WORKFLOWS,
        "w",
        # the receiver is on 127.0.0.1: opt in, as the workers do
        wf.PutWorkflow("w", wf.WorkflowConfig.model_validate(workflow), OutboundPolicy(True)),
        RequestContext(),
    )
    runs = RunStore(client, keys)
    trigger = {"type": "api", "source": "bench", "label": ""}
    started = time.perf_counter()
    gate = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        if rate:
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the load, not waiting for a condition
        async with gate:
            await runs.create("w", new_id("run"), trigger, {"i": i}, meta={}, now_ms=0)

    await asyncio.gather(*(one(i) for i in range(count)))
    await client.aclose()


def finished(client: Any) -> int:
    return int(client.xlen("cs:{0}:log"))


def measure(client: Any, since: str) -> tuple[list[int], int, int, int]:
    """(fire-to-start latencies, runs succeeded, first queued ms, last finished ms)."""
    queued: dict[str, int] = {}
    latency: list[int] = []
    succeeded = 0
    first, last = 0, 0
    start = since
    while True:
        entries = client.xrange("cs:{0}:log", min=start, count=20_000)
        if not entries:
            break
        for eid, fields in entries:
            at = int(eid.split(b"-")[0])
            kind = fields[b"type"]
            if kind not in (b"RunQueued", b"RunStarted", b"RunSucceeded"):
                continue
            run_id = orjson.loads(fields[b"data"])["run_id"]
            if kind == b"RunQueued":
                queued[run_id] = at
                first = first or at
            elif kind == b"RunStarted" and run_id in queued:
                latency.append(at - queued[run_id])
            elif kind == b"RunSucceeded":
                succeeded += 1
                last = at
        ms, seq = entries[-1][0].decode().split("-")
        start = f"{ms}-{int(seq) + 1}"
    return latency, succeeded, first, last


def scenario(
    name: str, workflow: dict[str, Any], workers: int, burst: int, rate: float, paced: int
) -> None:
    import redis as sync_redis

    with (
        tempfile.TemporaryDirectory(prefix="cs-bench-runs-") as tmp,
        redis_server(Path(tmp) / "redis", appendonly=True) as server,
    ):
        client = sync_redis.Redis.from_url(server.url)
        env = {**os.environ, "REDIS_URL": server.url, "PYTHONPATH": str(REPO_ROOT)}
        env["CRONSTREAM_ALLOW_PRIVATE_TARGETS"] = "1"  # the receiver is on 127.0.0.1
        procs = []
        for i in range(workers):
            log = open(Path(tmp) / f"worker{i}.log", "wb")
            procs.append(
                (
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "service",
                            "serve",
                            "--roles",
                            "worker",
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
            ready = Deadline(30)  # every worker has joined the consumer group
            while not ready.expired():
                try:
                    if len(client.xinfo_consumers("cs:{0}:queue", "workers")) >= workers:
                        break
                except sync_redis.ResponseError:
                    pass  # the group does not exist yet
                time.sleep(0.05)
            # paced: latency at a steady rate the workers keep up with
            mark = f"{int(time.time() * 1000)}-0"
            asyncio.run(queue_runs(server.url, workflow, paced, rate))
            done = Deadline(60)
            while measure(client, mark)[1] < paced and not done.expired():
                time.sleep(0.1)
            latency, ok_paced, _, _ = measure(client, mark)
            # burst: throughput with a full queue
            mark = f"{int(time.time() * 1000)}-0"
            asyncio.run(queue_runs(server.url, workflow, burst, None))
            done = Deadline(180)
            while measure(client, mark)[1] < burst and not done.expired():
                time.sleep(0.2)
            _, ok_burst, first, last = measure(client, mark)
        finally:
            for proc, log in procs:
                stop_process(proc)
                log.close()
        client.close()
    lat = sorted(latency)
    seconds = max((last - first) / 1000, 1e-3)
    print(
        f"{name}, {workers} worker process(es): burst {ok_burst}/{burst} runs in {seconds:.1f}s "
        f"= {ok_burst / seconds:,.0f} runs/s; fire-to-start at {rate:.0f}/s: "
        f"p50 {percentile(lat, 50):.0f} ms, p99 {percentile(lat, 99):.0f} ms "
        f"({ok_paced}/{paced} ran)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--paced", type=int, default=500)
    args = parser.parse_args()
    print(machine_line())
    url, stop = http_target()
    try:
        for name, workflow in (
            ("python no-op", {"target": {"type": "python", "handler": "bench.handlers:noop"}}),
            ("http local", {"target": {"type": "http", "url": url}}),
        ):
            for workers in (1, 2):
                scenario(name, workflow, workers, args.burst, args.rate, args.paced)
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
