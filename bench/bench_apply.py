"""Apply speed: 10,000 schedules from files, first apply and no-op re-apply.

Starts a redis-server on 127.0.0.1, writes ``--schedules`` schedules (a mix of cron and
interval specs, policies and inputs) in ``--files`` YAML files plus one file of
workflows, then times:

- ``cronstream apply DIR`` as a process (what a user runs: start-up included), for the
  first apply (everything created) and for a re-apply of the same files (nothing to do);
- the same two in this process, phase by phase: reading and validating the files,
  loading the write model and planning, appending;
- with each, the CPU time of the apply's process and of Redis: on a machine whose
  cores others share, the wall time grows with their load and the CPU time does not;
- a re-apply after 1% of the schedules changed.

After each run it checks the log length (the no-op must append nothing) and exits 1
if a check fails. Goals (issue): first apply <= 5 s, no-op re-apply <= 1 s.

    python bench/bench_apply.py [--schedules 10000] [--files 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.asyncio import Redis

from bench.common import REPO_ROOT, machine_line, redis_server
from service.manifests.plan import Options
from service.manifests.reconcile import apply, collections_paused, plan, read_manifest
from service.store.eventstore import EventStore
from service.store.keys import Keyspace

CRONS = ("*/5 * * * *", "0 2 * * MON-FRI", "30 */2 * * *", "15 9 1 * *")
ZONES = ("Europe/Berlin", "America/New_York", "UTC", "Asia/Tokyo")
OVERLAPS = ("skip", "buffer_one", "allow_all")
TIMEOUT_S = 300.0
PHASES = ("read+validate", "load+plan", "append", "total")


def schedule_yaml(i: int, changed: bool = False) -> str:
    if i % 3 == 0:
        spec = f"{{intervals: [{{every: {5 + i % 55}m}}]}}"
    else:
        spec = f'{{cron: ["{CRONS[i % len(CRONS)]}"], timezone: {ZONES[i % 4]}}}'
    return (
        f"  - id: sch-{i:06d}\n"
        f"    workflow_id: wf-{i % 10}\n"
        f"    spec: {spec}\n"
        f"    policy: {{overlap: {OVERLAPS[i % 3]}, catchup: latest}}\n"
        f"    input: {{customer: c{i}, full: {str(i % 2 == 0).lower()}}}\n"
        f"    tags: [team-{i % 7}{', changed' if changed else ''}]\n"
    )


def write_files(directory: Path, schedules: int, files: int, changed: int = 0) -> None:
    """The workflows file and ``files`` schedule files; ``changed`` schedules, spread
    over the files, get another tag."""
    directory.mkdir(parents=True, exist_ok=True)
    workflows = "".join(
        f"  - id: wf-{w}\n    target: {{type: none}}\n    retry: {{max_attempts: 3}}\n"
        for w in range(10)
    )
    (directory / "workflows.yaml").write_text("workflows:\n" + workflows)
    per_file = -(-schedules // files)
    for f in range(files):
        ids = range(f * per_file, min((f + 1) * per_file, schedules))
        step = schedules // changed if changed else 0
        body = "".join(schedule_yaml(i, step > 0 and i % step == 0) for i in ids)
        (directory / f"schedules-{f:03d}.yaml").write_text("schedules:\n" + body)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def redis_cpu(redis: Redis) -> float:
    """The Redis server's CPU seconds so far (user and system)."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run_cli(directory: Path, redis: Redis, redis_url: str, prefix: str) -> Run:
    """``cronstream apply DIR`` as a process: wall time, its CPU time, Redis's CPU time."""
    env = {**os.environ, "REDIS_URL": redis_url, "CRONSTREAM_KEY_PREFIX": prefix}
    cpu, server = children_cpu(), await redis_cpu(redis)
    started = time.perf_counter()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "service", "apply", str(directory)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"apply failed: {done.stderr[-2000:]}")
    return Run(took, children_cpu() - cpu, await redis_cpu(redis) - server)


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    redis_cpu: float


async def in_process(directory: Path, store: EventStore) -> dict[str, float]:
    """One apply, phase by phase (seconds), as ``apply_paths`` runs it."""
    with collections_paused():
        return await _phases(directory, store)


async def _phases(directory: Path, store: EventStore) -> dict[str, float]:
    times: dict[str, float] = {}
    cpu, server = time.process_time(), await redis_cpu(store.redis)
    started = time.perf_counter()
    manifest = await read_manifest(store, [directory])
    times["read+validate"] = time.perf_counter() - started
    mark = time.perf_counter()
    planned = await plan(store, manifest, Options())
    times["load+plan"] = time.perf_counter() - mark
    mark = time.perf_counter()
    report = await apply(store, planned, Options())
    times["append"] = time.perf_counter() - mark
    times["total"] = time.perf_counter() - started
    times["cpu"] = time.process_time() - cpu
    times["redis_cpu"] = await redis_cpu(store.redis) - server
    times["changes"] = len(planned.writes)
    times["appended"] = report.appended
    return times


async def log_length(redis: Redis, keys: Keyspace) -> int:
    return sum([int(await redis.xlen(keys.log(p))) for p in range(keys.partitions)])


def show(label: str, times: dict[str, float]) -> None:
    phases = "  ".join(f"{k} {times[k]:.3f}s" for k in PHASES)
    done = f"{times['changes']:.0f} changes, {times['appended']:.0f} events"
    cpu = f"CPU: this process {times['cpu']:.3f}s, Redis {times['redis_cpu']:.3f}s"
    print(f"{label}: {phases}  ({cpu}; {done})")


async def measure(args: argparse.Namespace, url: str, work: Path) -> bool:
    redis = Redis.from_url(url)
    ok = True
    cli_first, cli_again, first, again = [], [], [], []
    try:
        for r in range(args.rounds):
            keys = Keyspace(f"b{r}", 1)
            directory = work / f"files-{r}"
            write_files(directory, args.schedules, args.files)
            cli_first.append(await run_cli(directory, redis, url, keys.prefix))
            created = await log_length(redis, keys)
            ok &= _check(f"round {r}: every resource created", created == args.schedules + 10)
            cli_again.append(await run_cli(directory, redis, url, keys.prefix))
            unchanged = await log_length(redis, keys) == created
            ok &= _check(f"round {r}, process: the no-op appended nothing", unchanged)
            store = EventStore(redis, Keyspace(f"i{r}", 1))
            first.append(await in_process(directory, store))
            length = await log_length(redis, store.keys)
            again.append(await in_process(directory, store))
            unchanged = await log_length(redis, store.keys) == length
            ok &= _check(f"round {r}, in process: the no-op appended nothing", unchanged)
        changed = args.schedules // 100
        write_files(work / "files-0", args.schedules, args.files, changed=changed)
        edited = await in_process(work / "files-0", EventStore(redis, Keyspace("i0", 1)))
        ok &= _check(f"{changed} changed schedules updated", edited["appended"] == changed)
    finally:
        await redis.aclose()
    for label, runs in (("first apply", cli_first), ("no-op re-apply", cli_again)):
        median = statistics.median(r.wall for r in runs)
        cpu = ", ".join(f"{r.cpu:.2f}+{r.redis_cpu:.2f}" for r in runs)
        print(
            f"cronstream apply (process), {label}: median {median:.2f}s  "
            f"runs {_list([r.wall for r in runs])}  (CPU s, process+Redis: {cpu})"
        )
    for label, rounds in (("first apply", first), ("no-op re-apply", again)):
        for i, times in enumerate(rounds):
            show(f"in process, {label}, round {i}", times)
    show("in process, 1% of the schedules changed", edited)
    return ok


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _check(what: str, passed: bool) -> bool:
    print(f"check {what}: {'OK' if passed else 'FAIL'}")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine_line())
    files = f"{args.schedules} schedules in {args.files} files and 10 workflows"
    print(f"apply: {files}, {args.rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp) / "redis") as server:
        ok = asyncio.run(measure(args, server.url, Path(tmp)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
