"""Worker processes killed and stopped mid-run; retry timers across a full restart."""

from __future__ import annotations

import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as sync_redis

from service.store.embedded import RedisProcess, start_redis_server
from service.store.keys import Keyspace
from tests.fault.target_thread import ThreadTarget, thread_target
from tests.process import Service, wait_until

pytestmark = pytest.mark.slow

KEYS = Keyspace()
IDLE_MS = "1500"


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    server = start_redis_server(tmp_path / "redis", appendonly=True)
    yield server
    server.stop()


@pytest.fixture
def target() -> Iterator[ThreadTarget]:
    with thread_target() as t:
        yield t


def post(url: str, body: dict[str, Any], method: str = "POST") -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=orjson.dumps(body), method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = orjson.loads(response.read())
        return result


def run_events(client: sync_redis.Redis, run_id: str) -> list[str]:
    out = []
    for _eid, fields in client.xrange(KEYS.log(0)):
        if (
            fields[b"type"].startswith(b"Run")
            and orjson.loads(fields[b"data"]).get("run_id") == run_id
        ):
            out.append(fields[b"type"].decode())
    return out


def start_run(
    api: Service, target: ThreadTarget, path: str, retry: dict[str, Any] | None = None
) -> str:
    workflow: dict[str, Any] = {
        "target": {"type": "http", "url": target.url + path},
        "timeout": "30s",
    }
    if retry:
        workflow["retry"] = retry
    post(f"{api.url}/v1/workflows/w", workflow, method="PUT")
    return str(post(f"{api.url}/v1/workflows/w/runs", {})["run_id"])


def workers(tmp_path: Path, url: str, n: int, tag: str = "w") -> list[Service]:
    return [
        Service(
            tmp_path / f"{tag}{i}",
            redis_url=url,
            roles="worker",
            CRONSTREAM_RECLAIM_IDLE_MS=IDLE_MS,
        )
        for i in range(n)
    ]


def test_kill_9_a_worker_mid_run_the_run_is_reclaimed_and_succeeds_once(
    tmp_path: Path, redis_proc: RedisProcess, target: ThreadTarget
) -> None:
    api = Service(tmp_path / "api", redis_url=redis_proc.url, roles="api,projector").wait_healthy()
    client = sync_redis.Redis.from_url(redis_proc.url)
    [first] = workers(tmp_path, redis_proc.url, 1, "a")
    second: list[Service] = []
    try:
        run_id = start_run(api, target, "/block")
        wait_until(lambda: target.count("/block") == 1, 20, "the first worker to call")
        first.process.send_signal(signal.SIGKILL)
        first.stop()
        target.release.set()
        second = workers(tmp_path, redis_proc.url, 1, "b")
        wait_until(lambda: "RunSucceeded" in run_events(client, run_id), 30, "the run to end")
        events = run_events(client, run_id)
        assert events.count("RunStarted") == 2 and events.count("RunSucceeded") == 1
        assert {c["id"] for c in target.calls} == {run_id}  # the same webhook-id
    finally:
        for s in (api, first, *second):
            s.stop()
        client.close()


def test_a_stopped_worker_past_the_idle_bound_is_refused(
    tmp_path: Path, redis_proc: RedisProcess, target: ThreadTarget
) -> None:
    api = Service(tmp_path / "api", redis_url=redis_proc.url, roles="api,projector").wait_healthy()
    client = sync_redis.Redis.from_url(redis_proc.url)
    [stopped] = workers(tmp_path, redis_proc.url, 1, "a")
    others: list[Service] = []
    try:
        run_id = start_run(api, target, "/block")
        wait_until(lambda: target.count("/block") == 1, 20, "the first worker to call")
        os.kill(stopped.process.pid, signal.SIGSTOP)
        try:
            others = workers(tmp_path, redis_proc.url, 1, "b")
            wait_until(lambda: target.count("/block") == 2, 30, "the run to be reclaimed")
            target.release.set()
            wait_until(lambda: "RunSucceeded" in run_events(client, run_id), 20, "success")
        finally:
            os.kill(stopped.process.pid, signal.SIGCONT)
        wait_until(
            lambda: "completion refused" in stopped.output(),
            20,
            "the woken worker's completion to be refused",
        )
        events = run_events(client, run_id)
        assert events.count("RunSucceeded") == 1
        assert "RunAttemptFailed" not in events
    finally:
        for s in (api, stopped, *others):
            s.stop()
        client.close()


def test_retry_timers_survive_a_restart_of_every_process(
    tmp_path: Path, redis_proc: RedisProcess, target: ThreadTarget
) -> None:
    target.fail_first = 1
    api = Service(tmp_path / "api", redis_url=redis_proc.url, roles="api,projector").wait_healthy()
    client = sync_redis.Redis.from_url(redis_proc.url)
    procs = [api, *workers(tmp_path, redis_proc.url, 1, "a")]
    try:
        run_id = start_run(
            api,
            target,
            "/flaky",
            retry={"max_attempts": 3, "initial_interval": "3s", "max_interval": "3s", "backoff": 1},
        )
        wait_until(lambda: "RunAttemptFailed" in run_events(client, run_id), 20, "a failure")
        assert client.zscore(KEYS.retries(0), run_id) is not None  # the timer is in Redis
        for proc in procs:
            assert proc.stop() == 0
        procs = [
            Service(tmp_path / "api2", redis_url=redis_proc.url, roles="api,projector"),
            *workers(tmp_path, redis_proc.url, 1, "b"),
        ]
        wait_until(lambda: "RunSucceeded" in run_events(client, run_id), 30, "the retry")
        assert target.count("/flaky") == 2
        assert run_events(client, run_id).count("RunStarted") == 2
    finally:
        for proc in procs:
            proc.stop()
        client.close()
