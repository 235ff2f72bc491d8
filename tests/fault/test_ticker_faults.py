"""Ticker processes killed, stopped and competing, against a real Redis."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from service.domain.timeutil import parse_instant
from service.store.embedded import RedisProcess, start_redis_server
from service.store.keys import Keyspace
from tests import every_second
from tests.process import Service, wait_until

pytestmark = pytest.mark.slow

TTL_MS = 2000
KEYS = Keyspace()


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    server = start_redis_server(tmp_path / "redis", appendonly=True)
    yield server
    server.stop()


def create_schedules(url: str, count: int) -> list[str]:
    return every_second.create_schedules(url, KEYS, count)


def tickers(tmp_path: Path, url: str, n: int) -> list[Service]:
    return [
        Service(
            tmp_path / f"t{i}", redis_url=url, roles="ticker", CRONSTREAM_LEASE_TTL_MS=str(TTL_MS)
        )
        for i in range(n)
    ]


def holder_pid(client: sync_redis.Redis) -> int | None:
    raw = client.get(KEYS.lease(0))
    return int(raw.decode().split(":")[1]) if raw else None


def stop_holder_last(procs: list[Service], client: sync_redis.Redis) -> None:
    """A holder that stops frees its lease, which a running ticker takes at once under a
    new epoch: stop the others first when a test counts epochs."""
    holder = holder_pid(client)
    for p in sorted(procs, key=lambda p: p.process.pid == holder):
        p.stop()


def fires_by_schedule(client: sync_redis.Redis) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    for _eid, fields in client.xrange(KEYS.log(0)):
        if fields[b"type"] in (b"ScheduleFired", b"FiresMissed", b"FireSkipped"):
            data = orjson.loads(fields[b"data"])
            data["type"] = fields[b"type"].decode()
            out.setdefault(fields[b"sid"].decode(), []).append(data)
    return out


def assert_exactly_once(client: sync_redis.Redis, sids: list[str], min_fires: int) -> None:
    """Every nominal second up to each schedule's high-water mark fired exactly once."""
    records = fires_by_schedule(client)
    for sid in sids:
        events = records.get(sid, [])
        assert all(e["type"] == "ScheduleFired" for e in events), (sid, events[:3])
        nominals = [parse_instant(str(e["nominal_time"])) for e in events]
        assert len(nominals) == len(set(nominals)), f"{sid} fired a nominal time twice"
        assert len(nominals) >= min_fires, (sid, len(nominals))
        hwm = int(client.hget(KEYS.hwm(0), sid) or 0)
        expected = list(range(min(nominals), hwm + 1, 1000))
        assert sorted(nominals) == expected, f"{sid} lost nominal times"


def test_kill_9_the_holder_another_takes_over_and_nothing_is_lost(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    sids = create_schedules(redis_proc.url, 40)
    client = sync_redis.Redis.from_url(redis_proc.url)
    procs = tickers(tmp_path, redis_proc.url, 2)
    try:
        wait_until(lambda: holder_pid(client) is not None, 20, "a ticker to take the lease")
        first = holder_pid(client)
        wait_until(lambda: client.xlen(KEYS.log(0)) > 40 * 3 * 3, 20, "fires to flow")
        victim = next(p for p in procs if p.process.pid == first)
        os.kill(first, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: holder_pid(client) not in (None, first), 10, "the other to take over")
        takeover_s = time.monotonic() - killed_at
        assert takeover_s <= TTL_MS / 1000 + 1, takeover_s
        length = client.xlen(KEYS.log(0))
        wait_until(lambda: client.xlen(KEYS.log(0)) > length + 40 * 3 * 3, 20, "fires again")
        victim.stop()
    finally:
        codes = [p.stop() for p in procs]
    assert codes.count(0) == 1  # the survivor stops cleanly
    assert_exactly_once(client, sids, min_fires=4)
    epochs = {e["epoch"] for events in fires_by_schedule(client).values() for e in events}
    assert epochs == {1, 2}
    client.close()


def test_a_stopped_holder_is_fenced_and_steps_down(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    sids = create_schedules(redis_proc.url, 20)
    client = sync_redis.Redis.from_url(redis_proc.url)
    procs = tickers(tmp_path, redis_proc.url, 2)
    try:
        wait_until(lambda: holder_pid(client) is not None, 20, "a ticker to take the lease")
        first = holder_pid(client)
        assert first is not None
        wait_until(lambda: client.xlen(KEYS.log(0)) > 20 * 3 * 3, 20, "fires to flow")
        os.kill(first, signal.SIGSTOP)
        try:
            wait_until(lambda: holder_pid(client) not in (None, first), 10, "a takeover")
            length = client.xlen(KEYS.log(0))
            wait_until(lambda: client.xlen(KEYS.log(0)) > length + 20 * 3, 10, "new fires")
        finally:
            os.kill(first, signal.SIGCONT)
        length = client.xlen(KEYS.log(0))
        wait_until(lambda: client.xlen(KEYS.log(0)) > length + 20 * 3 * 2, 10, "more fires")
        assert holder_pid(client) != first  # the woken process did not take the lease back
    finally:
        stop_holder_last(procs, client)
    assert_exactly_once(client, sids, min_fires=4)
    # after the takeover, only the new epoch fires
    epochs = [e["epoch"] for e in fires_by_schedule(client)[sids[0]]]
    assert epochs == sorted(epochs) and set(epochs) == {1, 2}
    client.close()


def test_five_tickers_one_holder_no_duplicates(tmp_path: Path, redis_proc: RedisProcess) -> None:
    sids = create_schedules(redis_proc.url, 20)
    client = sync_redis.Redis.from_url(redis_proc.url)
    procs = tickers(tmp_path, redis_proc.url, 5)
    try:
        wait_until(lambda: client.xlen(KEYS.log(0)) > 20 * 3 * 4, 30, "fires to flow")
    finally:
        stop_holder_last(procs, client)
    assert_exactly_once(client, sids, min_fires=3)
    epochs = {e["epoch"] for events in fires_by_schedule(client).values() for e in events}
    assert epochs == {1}  # one holder all along
    client.close()


def test_redis_killed_and_restarted_with_aof(tmp_path: Path) -> None:
    redis_dir = tmp_path / "redis"
    server = start_redis_server(redis_dir, appendonly=True)
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    sids = create_schedules(server.url, 20)
    client = sync_redis.Redis.from_url(server.url)
    procs = tickers(tmp_path, server.url, 2)
    try:
        wait_until(lambda: client.xlen(KEYS.log(0)) > 20 * 3 * 3, 20, "fires to flow")
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        server = start_redis_server(redis_dir, port=port, appendonly=True)
        length = client.xlen(KEYS.log(0))
        wait_until(
            lambda: client.xlen(KEYS.log(0)) > length + 20 * 3 * 3, 30, "fires after the restart"
        )
    finally:
        for p in procs:
            p.stop()
        server.stop()
    server = start_redis_server(redis_dir, port=port, appendonly=True)
    try:
        client = sync_redis.Redis.from_url(server.url)
        assert_exactly_once(client, sids, min_fires=4)
        client.close()
    finally:
        server.stop()
