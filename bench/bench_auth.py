"""API throughput and p99 with tokens and rate limits on, against the same API open.

Runs bench_write_path.py's phases (``POST /v1/schedules``, then ``GET
/v1/schedules/{id}``) against a fresh redis-server and ``python -m service serve`` on
127.0.0.1, once open (``--insecure-dev``: no token, no limit) and once asking for tokens,
every request carrying an admin token whose rate (10^9 a minute) the run cannot reach:
each request is checked and taken from the token's bucket (by a call to Redis, or from
the permits its process leased from the bucket in the last second), and none is
refused. The two alternate ``--rounds`` times; per phase it prints each run, then the
median throughput, p99 and server CPU per request of each mode and the ratios
tokens/open (throughput: the goal is >= 0.9). The server's CPU per request moves least
when something else shares the machine: open's over tokens' is the throughput ratio a
CPU-bound server would see. Exits non-zero on any error (a 429 included).

    python bench/bench_auth.py [--concurrency 16] [--requests 2000] [--warmup 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.asyncio import Redis

from bench.bench_write_path import PHASE_TIMEOUT_S, Phase, ServerProbe, bench
from bench.common import Deadline, machine_line, percentile, redis_server, running_service
from service.domain.tokens import Rate, Scope
from service.store.keys import Keyspace
from service.store.tokens import NewToken, TokenStore, new_token

MODES = ("open", "tokens")
UNREACHED = Rate(10**9, 60_000)


async def store_token(redis_url: str) -> str:
    """An admin token with a rate no run reaches, stored before the service starts."""
    client = Redis.from_url(redis_url)
    try:
        token = new_token()
        await TokenStore(client, Keyspace()).create(
            token, NewToken("bench", frozenset({Scope.ADMIN}), UNREACHED)
        )
        return token
    finally:
        await client.aclose()


def run_mode(mode: str, work: Path, args: argparse.Namespace) -> list[Phase]:
    """One fresh redis-server and service, and bench_write_path's phases against them."""
    with redis_server(work / "redis", appendonly=True) as redis:
        token = asyncio.run(store_token(redis.url)) if mode == "tokens" else None
        headers = {"Authorization": f"Bearer {token}"} if token else None
        with running_service(redis.url, work, admin_token=token) as service:
            probe = ServerProbe(service.pid, redis.url)
            try:
                return asyncio.run(
                    bench(
                        service.base_url,
                        probe,
                        args.concurrency,
                        args.requests,
                        args.warmup,
                        headers=headers,
                    )
                )
            finally:
                probe.close()


def _median(phases: list[Phase], figure: str) -> float:
    values = {
        "rps": [p.throughput for p in phases],
        "p99": [percentile(p.latencies_ms, 99) for p in phases],
        "cpu": [p.server_cpu_s * 1000 / p.requests for p in phases if p.server_cpu_s is not None],
    }[figure]
    return statistics.median(values) if values else float("nan")


def summary(runs: dict[str, list[list[Phase]]]) -> list[str]:
    """Per measured phase: the median throughput, p99 and server CPU per request of each
    mode, and their ratios (the CPU figure moves least when the machine is shared)."""
    lines = []
    for index in (1, 2):  # 0 is the warm-up
        open_, on = ([r[index] for r in runs[mode]] for mode in MODES)
        rps, p99, cpu = ((_median(open_, f), _median(on, f)) for f in ("rps", "p99", "cpu"))
        lines.append(
            f"{open_[0].name}: open {rps[0]:,.0f} req/s p99 {p99[0]:.2f} ms CPU {cpu[0]:.3f} "
            f"ms/request; tokens {rps[1]:,.0f} req/s p99 {p99[1]:.2f} ms CPU {cpu[1]:.3f} "
            f"ms/request; ratios tokens/open: throughput {rps[1] / rps[0]:.3f}, p99 "
            f"{p99[1] / p99[0]:.3f}, open's CPU/tokens' {cpu[0] / cpu[1]:.3f}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200, help="requests before measuring")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each mode, alternating")
    args = parser.parse_args(argv)
    print(machine_line())
    print(
        f"auth: concurrency {args.concurrency}, {args.requests} requests per phase, "
        f"warm-up {args.warmup}, {args.rounds} round(s) of open and tokens, alternating"
    )
    deadline = Deadline(PHASE_TIMEOUT_S * 4 * len(MODES) * args.rounds)
    runs: dict[str, list[list[Phase]]] = {mode: [] for mode in MODES}
    errors = 0
    with tempfile.TemporaryDirectory(prefix="cronstream-bench-auth-") as tmp:
        for round_ in range(args.rounds):
            for mode in MODES:
                phases = run_mode(mode, Path(tmp) / f"{mode}-{round_}", args)
                runs[mode].append(phases)
                for phase in phases[1:]:
                    print(f"[{mode} #{round_ + 1}] {phase.report()}")
                    for line in phase.errors[:5]:
                        print(f"  error {line}")
                    errors += len(phase.errors)
    for line in summary(runs):
        print(line)
    if deadline.expired():
        print("FAIL: the benchmark overran its deadline")
        return 1
    if errors:
        print(f"FAIL: {errors} errors")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
