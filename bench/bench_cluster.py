"""Redis Cluster benchmark: the ticker run on a local 3-node cluster, and a ticker killed.

Starts three redis-server processes as a cluster (AOF on, fsync every second; slots
split in three), makes N schedules each due every 5 s (offsets spread evenly over the
period, workflow target ``none``) over P partitions with ``cronstream apply``, and runs
``cronstream serve --roles ticker`` with ``REDIS_URL=redis+cluster://``:

1. **steady**: ``--tickers`` processes for a measured window: fires per second,
   lateness (the fire's stream id, Redis's clock, minus its nominal time)
   p50/p99/max, duplicates, lost fires (decided but not fired) and fires the ticker
   has not reached yet.
2. **failover**: one more ticker joins; once the partitions are shared, the process
   holding the most is killed (SIGKILL). Prints the time until every one of its
   partitions has a new holder and until each has fired again, then duplicates, lost
   and not yet fired nominal times over the whole run (steady window to the end).

    python bench/bench_cluster.py                           # 100k schedules, 12 partitions
    python bench/bench_cluster.py --schedules 20000 --seconds 15
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO_ROOT,
    Deadline,
    machine_line,
    mib,
    peak_rss_kb,
    percentile,
    stop_process,
)

PERIOD_MS = 5000
SETTLE_MS = 3000
POLL_S = 0.02


def write_files(directory: Path, count: int, start_at: str, per_file: int = 10_000) -> None:
    """Workflow ``w`` (target none) and ``count`` schedules due every 5 s from
    ``start_at``, for apply."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "workflows.yaml").write_text("workflows:\n  - id: w\n    target: {type: none}\n")
    for f, first in enumerate(range(0, count, per_file)):
        body = "".join(
            f"  - id: s{i:06d}\n"
            f"    workflow_id: w\n"
            f"    spec: {{intervals: [{{every: 5s, offset: {(i * PERIOD_MS) // count}ms}}],"
            f" start_at: '{start_at}'}}\n"
            f"    policy: {{catchup: all, overlap: allow_all}}\n"
            for i in range(first, min(first + per_file, count))
        )
        (directory / f"schedules-{f:03d}.yaml").write_text("schedules:\n" + body)


def create(tmp: Path, url: str, partitions: int, count: int, start_ms: int) -> float:
    """The schedules, made by ``cronstream apply`` (batched, pipelined appends)."""
    from service.domain.timeutil import to_rfc3339

    write_files(tmp / "files", count, to_rfc3339(start_ms))
    env = {**os.environ, "REDIS_URL": url, "CRONSTREAM_PARTITIONS": str(partitions)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "service", "apply", str(tmp / "files")],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"apply failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started


class Tickers:
    """``serve --roles ticker`` processes on the cluster, each with its own log file."""

    def __init__(self, tmp: Path, url: str, partitions: int, ttl_ms: int) -> None:
        self.tmp = tmp
        self.env = {
            **os.environ,
            "REDIS_URL": url,
            "PYTHONPATH": str(REPO_ROOT),
            "CRONSTREAM_PARTITIONS": str(partitions),
            "CRONSTREAM_LEASE_TTL_MS": str(ttl_ms),
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []

    def start(self) -> subprocess.Popen[bytes]:
        i = len(self.procs)
        log = open(self.tmp / f"ticker{i}.log", "wb")
        command = [sys.executable, "-m", "service", "serve", "--roles", "ticker"]
        command += ["--log-level", "WARNING", "--data-dir", str(self.tmp / f"d{i}")]
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        self._logs.append(log)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        for log in self._logs:
            log.close()


@contextmanager
def local_cluster(tmp: Path) -> Iterator[Any]:
    from service.store.local_cluster import start_local_cluster

    cluster = start_local_cluster(tmp / "cluster", 3, appendonly=True)
    try:
        yield cluster
    finally:
        cluster.stop()


def redis_ms(client: Any) -> int:
    seconds, micros = client.time(target_nodes=client.get_primaries()[0])
    return int(seconds) * 1000 + int(micros) // 1000


def read_fires(client: Any, partitions: int, t0: int, t1: int, until: str = "+") -> dict[str, Any]:
    """Every ScheduleFired of a nominal time in [t0, t1) appended by ``until`` (a stream
    id): per schedule, and the lateness. A fire is appended at or after its nominal
    time, so the logs are read from ``t0`` on."""
    from service.store.keys import Keyspace

    keys = Keyspace("cs", partitions)
    seen: dict[str, list[int]] = {}
    lateness: list[int] = []
    for p in range(partitions):
        start = f"{t0 - 1000}-0"
        while True:
            entries = client.xrange(keys.log(p), min=start, max=until, count=20_000)
            if not entries:
                break
            for eid, fields in entries:
                if fields[b"type"] != b"ScheduleFired":
                    continue
                nominal = int(orjson.loads(fields[b"data"])["fire_id"].split(":")[1])
                if t0 <= nominal < t1:
                    seen.setdefault(fields[b"sid"].decode(), []).append(nominal)
                    lateness.append(int(eid.split(b"-")[0]) - nominal)
            ms, seq = entries[-1][0].decode().split("-")
            start = f"{ms}-{int(seq) + 1}"
    return {"seen": seen, "lateness": sorted(lateness)}


def marks(client: Any, partitions: int) -> dict[str, int]:
    """Each schedule's high-water mark: every nominal time up to it has been decided."""
    from service.store.keys import Keyspace

    keys = Keyspace("cs", partitions)
    out: dict[str, int] = {}
    for p in range(partitions):
        out.update({k.decode(): int(v) for k, v in client.hgetall(keys.hwm(p)).items()})
    return out


def due_times(count: int, t0: int, t1: int) -> Iterator[tuple[str, set[int]]]:
    """Each schedule's nominal times in [t0, t1)."""
    for i in range(count):
        offset = (i * PERIOD_MS) // count
        first = ((t0 - offset + PERIOD_MS - 1) // PERIOD_MS) * PERIOD_MS + offset
        yield f"s{i:06d}", set(range(first, t1, PERIOD_MS))


def duplicates_of(seen: dict[str, list[int]]) -> int:
    return sum(len(n) - len(set(n)) for n in seen.values())


def unfired(seen: dict[str, list[int]], count: int, t0: int, t1: int) -> int:
    return sum(len(due - set(seen.get(sid, []))) for sid, due in due_times(count, t0, t1))


def tally(
    seen: dict[str, list[int]], decided: dict[str, int], count: int, t0: int, t1: int
) -> tuple[int, int]:
    """Nominal times lost (decided, as the mark says, yet never fired: with catch-up
    ``all`` there must be none), and those not decided yet (the ticker behind)."""
    lost = pending = 0
    for sid, due in due_times(count, t0, t1):
        mark = decided.get(sid, 0)
        lost += len({n for n in due if n <= mark} - set(seen.get(sid, [])))
        pending += sum(1 for n in due if n > mark)
    return lost, pending


def holders(client: Any, partitions: int) -> list[int | None]:
    """The pid holding each partition's lease (owner tokens are host:pid:random)."""
    from service.store.keys import Keyspace

    keys = Keyspace("cs", partitions)
    raw = [client.get(keys.lease(p)) for p in range(partitions)]
    return [int(r.decode().split(":")[1]) if r else None for r in raw]


def wait(seconds: float) -> None:
    deadline = Deadline(seconds)
    while not deadline.expired():
        time.sleep(min(0.2, deadline.remaining()))


def steady(
    args: argparse.Namespace, client: Any, tickers: Tickers, start_ms: int
) -> tuple[int, int]:
    for _ in range(args.tickers):
        tickers.start()
    wait(max(0.0, (start_ms - time.time() * 1000) / 1000) + args.warmup)
    t0 = redis_ms(client)
    wait(args.seconds)
    t1 = redis_ms(client)
    wait(SETTLE_MS / 1000)  # the fires of the window's last nominal times land
    rss = [peak_rss_kb(p.pid) for p in tickers.procs]
    # what was appended by then, however long reading it takes
    fires = read_fires(client, args.partitions, t0, t1, until=f"{t1 + SETTLE_MS}-0")
    lateness = fires["lateness"]
    duplicates = duplicates_of(fires["seen"])
    pending = unfired(fires["seen"], args.schedules, t0, t1)
    seconds = (t1 - t0) / 1000
    print(
        f"steady: {args.schedules} schedules every 5s over {args.partitions} partitions, "
        f"{args.tickers} ticker process(es), window {seconds:.1f}s"
    )
    print(
        f"fires {len(lateness)} = {len(lateness) / seconds:,.0f}/s sustained; "
        f"duplicates {duplicates}; not fired by the window's end + 3 s {pending}"
    )
    if lateness:
        print(
            f"lateness ms: p50 {percentile(lateness, 50):.1f}  "
            f"p99 {percentile(lateness, 99):.1f}  max {lateness[-1]}"
        )
    print("ticker peak RSS: " + ", ".join(mib(r) for r in rss))
    return t0, t1


def newest_fire_ms(client: Any, partitions: int) -> list[int]:
    """The stream time of each partition's newest ScheduleFired (0: none yet)."""
    from service.store.keys import Keyspace

    keys = Keyspace("cs", partitions)
    out = []
    for p in range(partitions):
        newest = 0
        for eid, fields in client.xrevrange(keys.log(p), count=200):
            if fields[b"type"] == b"ScheduleFired":
                newest = int(eid.split(b"-")[0])
                break
        out.append(newest)
    return out


def failover(args: argparse.Namespace, client: Any, tickers: Tickers) -> None:
    tickers.start()
    pids = [p.pid for p in tickers.procs]
    shared = Deadline(60)
    while not shared.expired() and not all(
        holders(client, args.partitions).count(pid) for pid in pids
    ):
        time.sleep(POLL_S)
    held = holders(client, args.partitions)
    print("failover: leases held " + ", ".join(f"pid {pid}: {held.count(pid)}" for pid in pids))
    victim = max(pids, key=held.count)
    lost = [p for p, pid in enumerate(held) if pid == victim]
    os.kill(victim, signal.SIGKILL)
    killed_ms = redis_ms(client)
    killed = time.monotonic()
    moved = fired = None
    deadline = Deadline(10 * args.lease_ttl_ms / 1000 + 10)
    while (moved is None or fired is None) and not deadline.expired():
        now = holders(client, args.partitions)
        if moved is None and all(now[p] not in (None, victim) for p in lost):
            moved = time.monotonic() - killed
        newest = newest_fire_ms(client, args.partitions)
        if fired is None and all(newest[p] > killed_ms + 50 for p in lost):
            fired = time.monotonic() - killed
        time.sleep(POLL_S)
    print(
        f"killed pid {victim} holding {len(lost)} partition(s), lease TTL {args.lease_ttl_ms} ms: "
        f"taken over in {moved if moved is None else f'{moved:.2f}s'}, "
        f"fired again in {fired if fired is None else f'{fired:.2f}s'}"
    )
    wait(args.after)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--tickers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=10.0, help="after the first due time")
    parser.add_argument("--lease-ttl-ms", type=int, default=5000)
    parser.add_argument("--after", type=float, default=10.0, help="run on after the kill")
    args = parser.parse_args()
    from redis.cluster import RedisCluster

    print(machine_line())
    with (
        tempfile.TemporaryDirectory(prefix="cs-bench-cluster-") as tmp,
        local_cluster(Path(tmp)) as cluster,
    ):
        print(f"cluster: 3 primaries {', '.join(cluster.addresses)}, AOF everysec")
        # the schedules start firing once all exist and the tickers have started: a
        # backlog of fires since the first was made would be measured as lateness
        start_ms = int(time.time() * 1000) + int(args.schedules / 700 * 1000) + 10_000
        created_s = create(Path(tmp), cluster.url, args.partitions, args.schedules, start_ms)
        rate = args.schedules / created_s
        print(f"created {args.schedules} schedules in {created_s:.1f}s ({rate:,.0f}/s), by apply")
        host, port = cluster.addresses[0].rsplit(":", 1)
        client = RedisCluster(host=host, port=int(port), socket_timeout=60)
        tickers = Tickers(Path(tmp), cluster.url, args.partitions, args.lease_ttl_ms)
        try:
            t0, _ = steady(args, client, tickers, start_ms)
            failover(args, client, tickers)
            end = redis_ms(client) - 2 * PERIOD_MS  # due times the survivors had time for
        finally:
            tickers.stop()
        decided = marks(client, args.partitions)  # first: a fire appends as its mark moves
        seen = read_fires(client, args.partitions, t0, end)["seen"]
        duplicates = duplicates_of(seen)
        lost, pending = tally(seen, decided, args.schedules, t0, end)
        span = (end - t0) / 1000
        print(
            f"whole run ({span:.1f}s of due times): duplicates {duplicates}; lost {lost}; "
            f"not fired when the tickers stopped {pending}"
        )
        memory = client.info("memory", target_nodes=RedisCluster.PRIMARIES)
        used = sum(int(node["used_memory"]) for node in memory.values())
        print(f"redis used_memory, all nodes: {used / 2**20:.1f} MiB")
        client.close()
    return 0 if duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
