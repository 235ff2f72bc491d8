"""Re-partitioning a keyspace offline: every aggregate in its new partition, its events in
order and re-chained, the write model and views rebuilt, refused while anything runs."""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from migrations import repartition as repartition_module
from migrations.keyspace import check_keyspace, migrate
from migrations.partitions import PartitionCountMismatch, RepartitionUnfinished
from migrations.repartition import RepartitionRefused
from service.api.app import create_app
from service.audit.verify import verify
from service.cli import migrate_cmd
from service.clock import FixedClock
from service.config import Settings
from service.store.embedded import free_port
from service.store.keys import Keyspace
from service.ticker.lease import Lease
from service.ticker.ticker import Ticker
from tests.integration.audit.helpers import scripted_history
from tests.process import cli

VIEWS = (
    "/v1/schedules?limit=100",
    "/v1/schedules/a",
    "/v1/schedules/c",
    "/v1/workflows/wf",
)
KEY = {"Idempotency-Key": "make-e"}
KEYED = {"id": "e", "workflow_id": "wf", "spec": {"cron": ["0 * * * *"]}}  # partition 4 of 5
Events = dict[str, list[tuple[bytes, bytes, bytes, bytes]]]


async def events_by_aggregate(redis: Redis, keys: Keyspace) -> tuple[Events, set[str]]:
    """Each aggregate's (type, v, data, meta) in log order; and any event found outside
    its aggregate's partition."""
    out: Events = defaultdict(list)
    misplaced = set()
    for p in range(keys.partitions):
        for _eid, f in await redis.xrange(keys.log(p)):
            sid = f[b"sid"].decode()
            out[sid].append((f[b"type"], f[b"v"], f[b"data"], f[b"meta"]))
            if keys.partition_of(sid) != p:
                misplaced.add(sid)
    return dict(out), misplaced


async def write_model(redis: Redis, keys: Keyspace, sids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sid in sids:
        p = keys.partition_of(sid)
        for kind in ("schedule", "workflow"):
            state = await redis.hgetall(keys.state(p, kind, sid))
            if state:
                out[f"{kind}:{sid}"] = {k: state[k] for k in (b"version", b"status") if k in state}
        out[f"hwm:{sid}"] = await redis.hget(keys.hwm(p), sid)
        out[f"running:{sid}"] = sorted(await redis.smembers(keys.running(p, sid)))
        out[f"buffer:{sid}"] = len(await redis.lrange(keys.buffer(p, sid), 0, -1))
    for name in ("retries", "dead"):
        members = [
            await redis.zrange(getattr(keys, name)(p), 0, -1) for p in range(keys.partitions)
        ]
        out[name] = sorted(m for ms in members for m in ms)
    return out


async def history(api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock) -> None:
    await scripted_history(api, redis, keys, clock)
    await redis.delete(keys.lease(0))  # its ticker is gone: the keyspace is offline


async def test_a_keyspace_moves_to_five_partitions_whole(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock, settings: Settings
) -> None:
    await check_keyspace(redis, keys)
    await history(api, redis, keys, clock)
    created = await api.post("/v1/schedules", json=KEYED, headers=KEY)
    assert created.status == 201, await created.text()
    first_answer = await created.json()
    before, _ = await events_by_aggregate(redis, keys)
    sids = sorted(before)
    model = await write_model(redis, keys, sids)
    old_epoch = int(await redis.get(keys.epoch(0)) or 0)
    old_head = await redis.get(keys.chain(0))
    runs = (await (await api.get("/v1/runs?limit=100")).json())["items"]
    paths = [*VIEWS, *(f"/v1/runs/{run['id']}" for run in runs)]
    views = {path: await (await api.get(path)).json() for path in paths}
    assert len(runs) >= 4

    report = await migrate(redis, keys, partitions=5)

    assert report.repartitioned is not None and report.repartitioned.entries == sum(
        len(e) for e in before.values()
    )
    five = Keyspace(keys.prefix, 5)
    after, misplaced = await events_by_aggregate(redis, five)
    assert after == before and not misplaced  # every event, in its aggregate's order
    assert {five.partition_of(s) for s in sids} == {0, 1, 2, 4}  # they moved; 3 is empty
    assert await write_model(redis, five, sids) == model
    checked = await verify(redis, five)
    assert not checked.breaks and checked.entries == report.repartitioned.entries
    [moved] = orjson.loads(await redis.hget(keys.meta, "repartitioned"))
    assert (moved["from"], moved["to"], moved["old_heads"]) == (1, 5, [old_head.decode()])
    with pytest.raises(PartitionCountMismatch, match="has 5 partition"):
        await check_keyspace(redis, keys)
    await check_keyspace(redis, five)

    # the views answer from the new partitions
    app = create_app(Settings(**{**settings.__dict__, "partitions": 5}), redis, clock=clock)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        for path in paths:
            assert await (await client.get(path)).json() == views[path], path
        # the idempotency record moved with its schedule: a retry is answered, not applied
        again = await client.post("/v1/schedules", json=KEYED, headers=KEY)
        assert (again.status, await again.json()) == (201, first_answer)
        assert len((await events_by_aggregate(redis, five))[0]["e"]) == len(before["e"])
    finally:
        await client.close()

    # a ticker's next lease fences above every old epoch
    for lease in Ticker(redis, five, clock=clock).leases:
        assert await lease.acquire() and lease.state.epoch > old_epoch
    # the write model put every active schedule due at Redis's now, as a restore does
    due = {s: await redis.zscore(five.due(five.partition_of(s)), s) for s in sids}
    assert {s for s, at in due.items() if at is not None} == {"a", "d", "e"}


async def test_refused_while_a_lease_is_held_and_nothing_changes(
    redis: Redis, keys: Keyspace, api: TestClient, clock: FixedClock
) -> None:
    await check_keyspace(redis, keys)
    await history(api, redis, keys, clock)
    lease = Lease(redis, keys, 0, 5000)
    assert await lease.acquire()
    length = await redis.xlen(keys.log(0))
    with pytest.raises(RepartitionRefused, match="lease is held by"):
        await migrate(redis, keys, partitions=2)
    assert await redis.xlen(keys.log(0)) == length
    assert await redis.hget(keys.meta, "partitions") == b"1"
    assert not await redis.hexists(keys.meta, "repartition")


async def test_an_interrupted_re_partition_blocks_starts_and_finishes_when_run_again(
    redis: Redis,
    keys: Keyspace,
    api: TestClient,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await check_keyspace(redis, keys)
    await history(api, redis, keys, clock)
    before, _ = await events_by_aggregate(redis, keys)
    real_swap = repartition_module.swap

    async def crash(*args: Any) -> None:
        raise ConnectionError("lost in the middle")

    monkeypatch.setattr(repartition_module, "swap", crash)
    with pytest.raises(ConnectionError):
        await migrate(redis, keys, partitions=2)
    with pytest.raises(RepartitionUnfinished, match="stopped in its swap phase"):
        await check_keyspace(redis, keys)
    with pytest.raises(RepartitionRefused, match="finish it first"):
        await migrate(redis, keys, partitions=4)
    monkeypatch.setattr(repartition_module, "swap", real_swap)
    report = await migrate(redis, keys, partitions=2)
    assert report.repartitioned is not None and report.repartitioned.resumed == "swap"
    two = Keyspace(keys.prefix, 2)
    after, misplaced = await events_by_aggregate(redis, two)
    assert after == before and not misplaced
    assert not (await verify(redis, two)).breaks
    await check_keyspace(redis, two)


async def test_the_command_re_partitions_and_serve_refuses_the_old_count(
    redis: Redis,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"REDIS_URL": redis_url, "CRONSTREAM_KEY_PREFIX": "cli"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    await check_keyspace(redis, Keyspace("cli", 1))
    parser = argparse.ArgumentParser(prog="cronstream")
    migrate_cmd.add_parsers(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit):
        parser.parse_args(["migrate", "--partitions", "0"])
    assert "--partitions must be a positive integer, not '0'" in capsys.readouterr().err
    args = parser.parse_args(["migrate", "--partitions", "4"])
    assert await asyncio.to_thread(args.func, args) == 0
    assert "re-partitioned from 1 to 4 partitions" in capsys.readouterr().out
    port = str(free_port())
    refused = await asyncio.to_thread(
        cli, "serve", "--insecure-dev", "--port", port, timeout_s=30, **env
    )
    assert refused.returncode == 1
    assert "has 4 partition(s) but CRONSTREAM_PARTITIONS is 1" in refused.stderr, refused.stderr
