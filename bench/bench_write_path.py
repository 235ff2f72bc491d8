"""Write path: schedules created per second through the HTTP API, and reads.

Starts a redis-server and ``python -m service serve`` on 127.0.0.1, defines one
workflow, then at a fixed concurrency POSTs ``--requests`` schedules (after a
warm-up) and GETs them back. Prints throughput, p50/p99/max latency, the error
count (must be 0) and the server's peak RSS. Exits non-zero on any error.

    python bench/bench_write_path.py [--concurrency 16] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import redis as sync_redis

from bench.common import (
    Deadline,
    command_calls,
    cpu_seconds,
    describe_calls,
    machine_line,
    mib,
    peak_rss_kb,
    percentile,
    redis_server,
    running_service,
)

REQUEST_TIMEOUT_S = 30.0
PHASE_TIMEOUT_S = 120.0
WORKFLOW_ID = "w"

Request = Callable[[aiohttp.ClientSession, int], Awaitable[None]]


class UnexpectedStatus(Exception):
    """A reply with another status than the one the request expects."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:300].decode(errors='replace')}")


async def expect(reply: aiohttp.ClientResponse, status: int) -> None:
    body = await reply.read()
    if reply.status != status:
        raise UnexpectedStatus(reply.status, body)


@dataclass
class Phase:
    name: str
    requests: int
    seconds: float = 0.0
    server_cpu_s: float | None = None
    redis_calls: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds > 0 else 0.0

    def report(self) -> str:
        lat = self.latencies_ms
        return (
            f"{self.name}: {self.requests} requests in {self.seconds:.2f}s = "
            f"{self.throughput:,.0f} req/s; latency ms p50 {percentile(lat, 50):.2f} "
            f"p99 {percentile(lat, 99):.2f} max {max(lat, default=float('nan')):.2f}; "
            f"errors {len(self.errors)}\n  {self._cost()}"
        )

    def _cost(self) -> str:
        """What one request cost the server: CPU time and Redis commands."""
        n = max(self.requests, 1)
        cpu = "n/a" if self.server_cpu_s is None else f"{self.server_cpu_s * 1000 / n:.2f} ms"
        calls = describe_calls(self.redis_calls, n, "request")
        return f"server CPU {cpu}/request; {calls}"


class ServerProbe:
    """Reads what a phase cost the server: its CPU time and the commands Redis served."""

    def __init__(self, server_pid: int, redis_url: str) -> None:
        self.server_pid = server_pid
        self.redis = sync_redis.Redis.from_url(redis_url, socket_timeout=5)
        self._cpu: float | None = None

    def start(self) -> None:
        self.redis.config_resetstat()
        self._cpu = cpu_seconds(self.server_pid)

    def finish(self, phase: Phase) -> None:
        cpu = cpu_seconds(self.server_pid)
        if cpu is not None and self._cpu is not None:
            phase.server_cpu_s = cpu - self._cpu
        phase.redis_calls = command_calls(self.redis.info("commandstats"))

    def close(self) -> None:
        self.redis.close()


async def run_phase(
    name: str,
    session: aiohttp.ClientSession,
    request: Request,
    indexes: range,
    concurrency: int,
    probe: ServerProbe,
) -> Phase:
    """Send ``request(session, i)`` for every i, ``concurrency`` at a time, with a deadline."""
    phase = Phase(name, len(indexes))
    pending = iter(indexes)

    async def worker() -> None:
        for i in pending:
            started = time.perf_counter()
            try:
                await request(session, i)
            except (aiohttp.ClientError, TimeoutError, UnexpectedStatus) as exc:
                phase.errors.append(f"#{i}: {type(exc).__name__}: {exc}")
                continue
            phase.latencies_ms.append((time.perf_counter() - started) * 1000)

    probe.start()
    started = time.perf_counter()
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - started
    probe.finish(phase)
    return phase


def schedule_body(sid: str) -> dict[str, object]:
    return {
        "id": sid,
        "workflow_id": WORKFLOW_ID,
        "spec": {"cron": ["*/5 * * * *"], "timezone": "Europe/Berlin"},
    }


async def bench(
    base_url: str,
    probe: ServerProbe,
    concurrency: int,
    requests: int,
    warmup: int,
    headers: dict[str, str] | None = None,
) -> list[Phase]:
    """The phases; ``headers`` go with every request (bench_auth.py's bearer token)."""
    run = uuid.uuid4().hex[:8]
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(
        base_url, connector=connector, timeout=timeout, headers=headers
    ) as session:
        async with session.put(
            f"/v1/workflows/{WORKFLOW_ID}", json={"target": {"type": "none"}}
        ) as reply:
            if reply.status >= 300:
                raise RuntimeError(f"PUT workflow: HTTP {reply.status}: {await reply.text()}")

        async def create(session: aiohttp.ClientSession, i: int) -> None:
            sid = f"bench-{run}-{i}"
            async with session.post("/v1/schedules", json=schedule_body(sid)) as reply:
                await expect(reply, 201)

        async def get(session: aiohttp.ClientSession, i: int) -> None:
            async with session.get(f"/v1/schedules/bench-{run}-{i}") as reply:
                await expect(reply, 200)

        def phase(name: str, request: Request, indexes: range) -> Awaitable[Phase]:
            return run_phase(name, session, request, indexes, concurrency, probe)

        warm = await phase("warm-up", create, range(-warmup, 0))
        write = await phase("POST /v1/schedules", create, range(requests))
        read = await phase("GET /v1/schedules/{id}", get, range(requests))
    return [warm, write, read]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300, help="requests before measuring")
    parser.add_argument(
        "--appendonly", choices=("yes", "no"), default="yes", help="Redis AOF (default yes)"
    )
    args = parser.parse_args(argv)

    print(machine_line())
    print(
        f"write path: concurrency {args.concurrency}, {args.requests} requests, "
        f"warm-up {args.warmup}, redis appendonly={args.appendonly} (fsync everysec); "
        "client and server share this machine"
    )
    deadline = Deadline(PHASE_TIMEOUT_S * 4)
    with tempfile.TemporaryDirectory(prefix="cronstream-bench-") as tmp:
        work = Path(tmp)
        with redis_server(work / "redis", appendonly=args.appendonly == "yes") as redis:
            with running_service(redis.url, work) as service:
                probe = ServerProbe(service.pid, redis.url)
                try:
                    phases = asyncio.run(
                        bench(service.base_url, probe, args.concurrency, args.requests, args.warmup)
                    )
                finally:
                    probe.close()
                server_rss = peak_rss_kb(service.pid)
                redis_rss = peak_rss_kb(redis.pid)
                alive = service.process.poll() is None
            log_tail = service.log_tail(15)
    errors = 0
    for phase in phases:
        print(phase.report())
        for line in phase.errors[:5]:
            print(f"  error {line}")
        errors += len(phase.errors)
    print(f"server peak RSS {mib(server_rss)}; redis-server peak RSS {mib(redis_rss)}")
    code = service.process.returncode
    print(f"service stopped on SIGTERM: exit {code} after {service.stop_seconds or 0:.2f}s")
    if code != 0:
        print(f"WARNING: the service did not exit cleanly; its log ends:\n{log_tail}")
    if not alive:
        print(f"FAIL: the service exited during the benchmark:\n{log_tail}")
        return 1
    if deadline.expired():
        print("FAIL: the benchmark overran its deadline")
        return 1
    if errors:
        print(f"FAIL: {errors} errors")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
