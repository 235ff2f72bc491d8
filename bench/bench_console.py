"""The web console with many schedules: how long its pages take to render.

Starts a fresh redis-server and ``python -m service serve --insecure-dev``
on 127.0.0.1, creates ``--schedules`` schedules through the API (ten workflows, a few
cadences, one in ten paused, tags), then asks for each console page in turn, one
request at a time, and prints p50/p99/max per page in milliseconds: the schedules page
(first page, a later page, each filter), a schedule's page, the runs page, and the
load forecast (its page, and ``GET /v1/forecast`` over 7 days, which evaluates every
schedule). A page is rendered from the API over loopback, so its time includes those
calls. Exits non-zero when a page does not answer 200.

    python bench/bench_console.py [--schedules 10000] [--requests 100] [--forecasts 5]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench.common import machine_line, percentile, redis_server, start_service, stop_process

CADENCES = (["0 * * * *"], ["*/15 * * * *"], ["30 2 * * *"], ["0 9 * * MON-FRI"], ["5 4 1 * *"])
WORKFLOWS = 10
NEXT = re.compile(r'href="/console/schedules\?([^"]*cursor=[^"]*)" rel="next"')


def body(i: int) -> dict[str, object]:
    return {
        "id": f"job-{i:05}",
        "name": f"Job {i}",
        "workflow_id": f"wf-{i % WORKFLOWS}",
        "spec": {"cron": CADENCES[i % len(CADENCES)], "timezone": "Europe/Berlin"},
        "tags": [f"team-{i % 7}"],
        "paused": i % 10 == 0,
    }


async def seed(session: aiohttp.ClientSession, url: str, count: int, concurrency: int) -> None:
    for w in range(WORKFLOWS):
        async with session.put(f"{url}/v1/workflows/wf-{w}", json={"target": {"type": "none"}}):
            pass
    queue = iter(range(count))

    async def one_worker() -> None:
        for i in queue:
            async with session.post(f"{url}/v1/schedules", json=body(i)) as r:
                if r.status not in (201, 202):
                    raise RuntimeError(f"create {i}: {r.status} {await r.text()}")

    await asyncio.gather(*(one_worker() for _ in range(concurrency)))


async def timed(session: aiohttp.ClientSession, url: str, n: int) -> tuple[list[float], str]:
    times, text = [], ""
    for _ in range(n):
        started = time.perf_counter()
        async with session.get(url) as r:
            text = await r.text()
            if r.status != 200:
                raise RuntimeError(f"GET {url}: {r.status} {text[:300]}")
        times.append((time.perf_counter() - started) * 1000)
    return times, text


def line(name: str, times: list[float]) -> str:
    return (
        f"  {name:<38} p50 {percentile(times, 50):7.1f} ms   p99 {percentile(times, 99):7.1f} ms"
        f"   max {max(times):7.1f} ms   (n={len(times)})"
    )


async def measure(url: str, args: argparse.Namespace) -> None:
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        started = time.perf_counter()
        await seed(session, url, args.schedules, args.concurrency)
        print(f"created {args.schedules} schedules in {time.perf_counter() - started:.1f} s")
        first, page = await timed(session, f"{url}/console/schedules", args.requests)
        found = NEXT.search(page)
        assert found, "the first page has no next page"
        pages = [
            ("schedules, first page", first),
            ("schedules, next page", f"/console/schedules?{found.group(1).replace('&amp;', '&')}"),
            ("schedules, status=paused", "/console/schedules?status=paused"),
            ("schedules, workflow_id=wf-3", "/console/schedules?workflow_id=wf-3"),
            ("schedules, tag=team-4", "/console/schedules?tag=team-4"),
            ("schedules, text 'job-09' (scans)", "/console/schedules?q=job-09"),
            ("a schedule's page", f"/console/schedules/job-{args.schedules // 2:05}"),
            ("runs page", "/console/runs"),
        ]
        print(f"console pages ({args.schedules} schedules, one request at a time):")
        for name, target in pages:
            times = (
                target
                if isinstance(target, list)
                else (await timed(session, url + target, args.requests))[0]
            )
            print(line(name, times))
        for name, target in (
            ("forecast page (24 h)", "/console/forecast"),
            ("GET /v1/forecast?window=7d", "/v1/forecast?window=7d"),
        ):
            print(line(name, (await timed(session, url + target, args.forecasts))[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--forecasts", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp) / "redis") as redis:
        service = start_service(redis.url, Path(tmp))
        try:
            asyncio.run(measure(service.base_url, args))
        finally:
            stop_process(service.process)


if __name__ == "__main__":
    main()
