"""Tracing overhead: the write path and the ticker with tracing off and with OTLP export.

Runs ``bench_write_path.py`` and ``bench_ticker.py`` twice each: with
``OTEL_TRACES_EXPORTER=none`` and with ``otlp`` to a local OTLP/HTTP sink (in this
process, on 127.0.0.1) that accepts and counts every export. Prints each run's
figures and the ratios.

    python bench/bench_tracing.py [--requests 2000] [--schedules 10000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO_ROOT, free_port, machine_line


class Sink:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests = 0
        self.bytes = 0
        self._stop = threading.Event()
        ready = threading.Event()

        async def serve() -> None:
            from aiohttp import web

            async def traces(request: web.Request) -> web.Response:
                body = await request.read()
                self.requests += 1
                self.bytes += len(body)
                return web.Response(status=200, content_type="application/x-protobuf")

            app = web.Application(client_max_size=64 * 2**20)
            app.router.add_post("/v1/traces", traces)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            ready.set()
            await asyncio.to_thread(self._stop.wait)
            await runner.cleanup()

        threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
        assert ready.wait(10)

    def stop(self) -> None:
        self._stop.set()


def run(script: str, args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def figure(text: str, pattern: str) -> float:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"no {pattern!r} in:\n{text}")
    return float(match.group(1).replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    print(machine_line())
    sink = Sink()
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    modes = {
        "none": {**base, "OTEL_TRACES_EXPORTER": "none"},
        "otlp": {
            **base,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.port}",
        },
    }
    results: dict[str, dict[str, float]] = {}
    try:
        for mode, env in modes.items():
            write = run("bench_write_path.py", ["--requests", str(args.requests)], env)
            post = write[write.index("POST /v1/schedules") :]
            ticker = run(
                "bench_ticker.py",
                ["--schedules", str(args.schedules), "--seconds", str(args.seconds)],
                env,
            )
            results[mode] = {
                "api_rps": figure(post, r"= ([\d,.]+) req/s"),
                "api_p99": figure(post, r"p99 ([\d.]+)"),
                "fires_per_s": figure(ticker, r"fires \d+ = ([\d,.]+)/s"),
                "fire_p99": figure(ticker, r"p99 ([\d.]+)"),
            }
            print(
                f"tracing {mode}: API {results[mode]['api_rps']:,.0f} creates/s "
                f"(p99 {results[mode]['api_p99']:.1f} ms); ticker "
                f"{results[mode]['fires_per_s']:,.0f} fires/s "
                f"(lateness p99 {results[mode]['fire_p99']:.1f} ms)"
            )
    finally:
        sink.stop()
    off, on = results["none"], results["otlp"]
    print(
        f"otlp/none: API throughput x{on['api_rps'] / off['api_rps']:.2f}, "
        f"ticker fires/s x{on['fires_per_s'] / off['fires_per_s']:.2f}, "
        f"fire lateness p99 {off['fire_p99']:.1f} -> {on['fire_p99']:.1f} ms; "
        f"sink received {sink.requests} exports, {sink.bytes / 2**20:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
