"""Next-fire computations per second for a mix of typical specs, cold and cached.

Run: ``python bench/bench_spec.py [--seconds 2]``. Cold: caches cleared before every
computation (parse, compile, evaluate). Uncached: compiled specs, fresh instants (what
the ticker pays for a new fire). Cached: the same (spec, instant) asked again (what the
API and repeated ticks pay). Prints rates, p50/p99 per computation, peak memory and the
machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.domain.spec import Spec, clear_caches, next_fire_after

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

SPECS = {
    "*/15 * * * * UTC": Spec(cron=["*/15 * * * *"]),
    "0 2 * * * Berlin": Spec(cron=["0 2 * * *"], timezone="Europe/Berlin"),
    "0 9 * * MON-FRI New York": Spec(cron=["0 9 * * MON-FRI"], timezone="America/New_York"),
    "0 0 L * * UTC": Spec(cron=["0 0 L * *"]),
    "*/10 * * * * * (6 fields) London": Spec(cron=["*/10 * * * * *"], timezone="Europe/London"),
    "30 1 * * * Lord Howe": Spec(cron=["30 1 * * *"], timezone="Australia/Lord_Howe"),
    "interval 90s": Spec(intervals=[{"every": "90s"}]),
    "0 2 * * * + exclude Sundays": Spec(cron=["0 2 * * *"], exclude_cron=["0 2 * * 0"]),
}


def measure(step: Callable[[int], object], seconds: float) -> tuple[float, float, float]:
    """Rate per second, p50 and p99 in microseconds of ``step(i)`` called for ``seconds``."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        t0 = time.perf_counter_ns()
        for _ in range(100):
            step(i)
            i += 1
        samples.append((time.perf_counter_ns() - t0) / 100 / 1000)
    samples.sort()
    total = sum(samples) * 100 / 1e6
    return i / total, samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per spec and mode")
    options = parser.parse_args()
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs (one core used)")
    header = f"{'spec':36} {'mode':9} {'per second':>12} {'p50 us':>8} {'p99 us':>8}"
    print(header)
    print("-" * len(header))
    totals: dict[str, list[float]] = {"cold": [], "uncached": [], "cached": []}
    for name, spec in SPECS.items():

        def cold(i: int, spec: Spec = spec) -> object:
            clear_caches()
            return next_fire_after(spec, START_MS + i * 7_919_000)

        def uncached(i: int, spec: Spec = spec) -> object:
            return next_fire_after(spec, START_MS + i * 7_919_000)

        def cached(i: int, spec: Spec = spec) -> object:
            return next_fire_after(spec, START_MS + (i % 64) * 7_919_000)

        for mode, step in (("cold", cold), ("uncached", uncached), ("cached", cached)):
            clear_caches()
            rate, p50, p99 = measure(step, options.seconds)
            totals[mode].append(rate)
            print(f"{name:36} {mode:9} {rate:12,.0f} {p50:8.2f} {p99:8.2f}")
    print()
    for mode, rates in totals.items():
        mean = len(rates) / sum(1 / r for r in rates)
        print(f"mix ({mode}): {mean:,.0f} computations per second (harmonic mean)")
    print(f"peak traced memory: {peak_memory() / 1024:,.0f} KiB (all specs, 10,000 instants each)")


def peak_memory() -> int:
    """Peak memory (tracemalloc, measured apart from the timings it would slow down)."""
    clear_caches()
    tracemalloc.start()
    for spec in SPECS.values():
        for i in range(10_000):
            next_fire_after(spec, START_MS + i * 7_919_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


if __name__ == "__main__":
    main()
