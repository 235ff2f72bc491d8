"""Reclaiming under saturation: every worker busy, one killed (or stopped) holding runs.

Two worker processes with two slots each run one-second runs while new runs keep
arriving faster than they finish, so there is always new work to read. One worker
dies (kill -9) or freezes (SIGSTOP) with its slots full; its runs must start again
on the other worker within the reclaim time plus one run's length (the wait for a
slot to free) and a small margin, although that worker is never idle.
"""

from __future__ import annotations

import os
import signal
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as sync_redis

from service.store.embedded import RedisProcess, start_redis_server
from service.store.keys import Keyspace
from service.store.runs import GROUP
from tests.process import Service, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

KEYS = Keyspace()
IDLE_MS = 1500
SLOTS = 2
RUN_S = 1.0
BACKLOG = 20  # queued before the workers start: both are saturated at once
INFLOW_PER_S = 4.0  # what two workers finish per second; one alone falls behind
MARGIN_S = 2.5  # maintenance ticks, the start script, a loaded machine
BOUND_MS = IDLE_MS + int((RUN_S + MARGIN_S) * 1000)
HANDLER = {"type": "python", "handler": "tests.fault.worker_handlers:slow"}


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    server = start_redis_server(tmp_path / "redis", appendonly=False)
    yield server
    resume(server.pid)
    server.stop()


def resume(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def call(url: str, body: dict[str, Any], method: str = "POST") -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=orjson.dumps(body), method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = orjson.loads(response.read())
        return result


def queue_run(api: Service) -> str:
    return str(call(f"{api.url}/v1/workflows/w/runs", {"input": {"sleep_s": RUN_S}})["run_id"])


class Inflow:
    """Queues runs at a steady rate from a thread until stopped (at most ``limit``)."""

    def __init__(self, api: Service, per_s: float, limit: int = 1000) -> None:
        self.api = api
        self.interval_s = 1 / per_s
        self.limit = limit
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(self.limit):
            if self.stopped.wait(self.interval_s):
                return
            queue_run(self.api)

    def __enter__(self) -> Inflow:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(15)


def consumers(client: sync_redis.Redis) -> dict[str, int]:
    """Consumer name -> entries it holds (read or claimed, not yet acknowledged)."""
    try:
        infos: list[dict[str, Any]] = client.xinfo_consumers(KEYS.queue(0), GROUP)
    except sync_redis.ResponseError:  # no worker has made the group yet
        return {}
    return {info["name"].decode(): int(info["pending"]) for info in infos}


def unread(client: sync_redis.Redis) -> int:
    """Entries of the queue no worker has read yet."""
    [group] = [g for g in client.xinfo_groups(KEYS.queue(0)) if g["name"] == GROUP.encode()]
    last = group["last-delivered-id"].decode()
    return len(client.xrange(KEYS.queue(0), f"({last}", "+"))


def saturated(client: sync_redis.Redis, workers: int) -> bool:
    held = consumers(client).values()
    return len(held) == workers and min(held) >= SLOTS and unread(client) > 0


def consumer_of(client: sync_redis.Redis, pid: int) -> str:
    names = [name for name in consumers(client) if f":{pid}:" in name]
    assert len(names) == 1, f"no single consumer for pid {pid}: {consumers(client)}"
    return names[0]


def held_runs(client: sync_redis.Redis, consumer: str) -> dict[str, str]:
    """Run id -> queue entry id of every entry ``consumer`` holds."""
    queue = KEYS.queue(0)
    pending = client.xpending_range(queue, GROUP, "-", "+", 100, consumername=consumer)
    out = {}
    for item in pending:
        [(entry_id, fields)] = client.xrange(queue, item["message_id"], item["message_id"])
        out[fields[b"run_id"].decode()] = entry_id.decode()
    return out


def starts_elsewhere(client: sync_redis.Redis, runs: set[str], pid: int) -> dict[str, int]:
    """Run id -> append time (ms) of a RunStarted of one of ``runs`` by another process."""
    out: dict[str, int] = {}
    for entry_id, fields in client.xrange(KEYS.log(0)):
        if fields[b"type"] != b"RunStarted":
            continue
        data = orjson.loads(fields[b"data"])
        if data["run_id"] in runs and f":{pid}:" not in data["worker"]:
            out.setdefault(data["run_id"], int(entry_id.split(b"-")[0]))
    return out


def redis_ms(client: sync_redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def worker(tmp_path: Path, url: str, tag: str) -> Service:
    return Service(
        tmp_path / tag,
        redis_url=url,
        roles="worker",
        CRONSTREAM_RECLAIM_IDLE_MS=str(IDLE_MS),
        CRONSTREAM_WORKER_CONCURRENCY=str(SLOTS),
    )


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["kill-9", "sigstop"])
def test_runs_of_a_lost_worker_restart_within_the_reclaim_time_while_every_worker_is_busy(
    tmp_path: Path, redis_proc: RedisProcess, fault: signal.Signals
) -> None:
    api = Service(tmp_path / "api", redis_url=redis_proc.url, roles="api,projector").wait_healthy()
    client = sync_redis.Redis.from_url(redis_proc.url)
    procs = [api]
    try:
        call(f"{api.url}/v1/workflows/w", {"target": HANDLER}, method="PUT")
        for _ in range(BACKLOG):
            queue_run(api)
        victim = worker(tmp_path, redis_proc.url, "victim")
        other = worker(tmp_path, redis_proc.url, "other")
        procs += [victim, other]
        with Inflow(api, INFLOW_PER_S):
            wait_until(
                lambda: saturated(client, 2),
                30,
                "both workers to fill their slots",
            )
            name = consumer_of(client, victim.process.pid)
            os.kill(victim.process.pid, fault)
            lost_at = redis_ms(client)
            held = held_runs(client, name)
            assert held, "the worker held no runs when it was lost"
            assert unread(client) > 0  # new work is waiting too
            restarts: dict[str, int] = {}

            def restarted() -> bool:
                restarts.update(starts_elsewhere(client, set(held), victim.process.pid))
                return len(restarts) == len(held)

            wait_until(restarted, BOUND_MS / 1000 + 10, f"the runs {sorted(held)} to restart")
        waits = {run_id: at - lost_at for run_id, at in restarts.items()}
        assert max(waits.values()) <= BOUND_MS, f"restarted after {waits} ms"
        if fault == signal.SIGSTOP:
            os.kill(victim.process.pid, signal.SIGCONT)
    finally:
        for proc in procs:
            resume(proc.process.pid)
            proc.stop()
        client.close()
