"""Pipelined batches build exactly the views one-by-one application builds.

A scripted history touches every view (schedules in and out of namespaces, tags,
pauses, deletes, workflows, fires, skipped fires and runs through a worker); the
log is then projected again into separate namespaces, one event per script call,
in one batch, and in small batches that each start from the records the batch
before them left while that one is still being written. Every key of every view
must match, byte for byte, the live views too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from projections.projector import Projector, _decode
from projections.rebuild import SHADOW, SHADOW_NAMESPACE, SHADOW_PROJECTION
from projections.switch import Views, switch_views
from service.api.context import KEYS, REDIS
from service.commands import SCHEDULES, CommandService, ProjectionWaiter, RequestContext
from service.domain import schedule as sched
from service.domain.managed import Managed
from service.domain.spec import Spec
from service.store.eventstore import EventStore, decode_entry
from service.store.keys import Keyspace
from service.worker.worker import Worker
from tests.integration.api.helpers import SPEC

NAMESPACE = {"Cronstream-Namespace": "team"}
NOOP = {"type": "python", "handler": "tests.integration.runs.handlers:noop"}


async def dump(redis: Redis, keys: Keyspace, namespace: str) -> dict[str, Any]:
    """Every view key of ``namespace`` by its name (the prefix cut), with its content."""
    prefix = keys.view_prefix(0, namespace)
    out: dict[str, Any] = {}
    async for raw in redis.scan_iter(match=prefix + "*", count=500):
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        if kind == "string":
            out[key[len(prefix) :]] = await redis.get(key)
        else:
            out[key[len(prefix) :]] = await redis.zrange(key, 0, -1, withscores=True)
    return out


@pytest.fixture
async def worker(redis: Redis, keys: Keyspace) -> AsyncIterator[None]:
    commands = CommandService(
        EventStore(redis, keys), ProjectionWaiter(redis, keys), wait_timeout_s=0
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        Worker(redis, keys, commands, concurrency=4, idle_bound_ms=200).run(stop)
    )
    yield
    stop.set()
    await asyncio.wait_for(task, 20)


async def ok(response: Any) -> dict[str, Any]:
    assert response.status < 300, await response.text()
    if response.status == 204:
        return {}
    body: dict[str, Any] = await response.json()
    return body


async def until_runs_end(api: TestClient, run_ids: list[str], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    for run_id in run_ids:
        while (await ok(await api.get(f"/v1/runs/{run_id}")))["status"] != "succeeded":
            assert time.monotonic() < deadline, f"run {run_id} did not succeed in time"
            await asyncio.sleep(0.02)


async def history(api: TestClient) -> None:
    for wid, target in (("none", {"type": "none"}), ("py", NOOP), ("gone", {"type": "none"})):
        await ok(await api.put(f"/v1/workflows/{wid}", json={"target": target}))
    await ok(await api.put("/v1/workflows/gone", json={"target": NOOP}))
    await ok(
        await api.put("/v1/workflows/none", json={"target": {"type": "none"}}, headers=NAMESPACE)
    )
    await ok(await api.delete("/v1/workflows/gone"))
    for i in range(6):
        body = {"id": f"s{i}", "workflow_id": "none", "spec": SPEC, "tags": [f"t{i % 2}"]}
        await ok(await api.post("/v1/schedules", json=body))
    for sid in ("a", "b"):
        body = {"id": sid, "workflow_id": "none", "spec": SPEC, "tags": ["ns"]}
        await ok(await api.post("/v1/schedules", json=body, headers=NAMESPACE))
    body = {"id": "py", "workflow_id": "py", "spec": SPEC, "policy": {"overlap": "skip"}}
    await ok(await api.post("/v1/schedules", json=body))
    await ok(await api.patch("/v1/schedules/s1", json={"workflow_id": "py", "tags": ["moved"]}))
    await ok(await api.post("/v1/schedules/s2/pause", json={"note": "p"}))
    await ok(await api.post("/v1/schedules/s4/pause", json={}))
    await ok(await api.post("/v1/schedules/s4/resume", json={}))
    await ok(await api.delete("/v1/schedules/s3"))
    await ok(await api.post("/v1/schedules", json={"id": "s3", "workflow_id": "py", "spec": SPEC}))
    await ok(await api.delete("/v1/schedules/b", headers=NAMESPACE))
    await apply_file(api, paused=False)
    await apply_file(api, paused=True)
    await ok(await api.patch("/v1/schedules/m", json={"tags": ["by-hand"]}))  # an override
    runs = []
    for sid, times in (("s0", 12), ("s4", 3), ("s1", 2), ("py", 2)):
        for _ in range(times):
            fired = await ok(await api.post(f"/v1/schedules/{sid}/trigger", json={}))
            runs += [fired["run_id"]] if fired.get("run_id") and sid != "s0" else []
        await until_runs_end(api, [r for r in runs if r])
    for _ in range(3):
        await ok(await api.post("/v1/schedules/a/trigger", json={}, headers=NAMESPACE))


async def apply_file(api: TestClient, paused: bool) -> None:
    """What ``apply`` does for a schedule a file keeps (``managed``, ``declared``)."""
    app = api.server.app
    commands = CommandService(
        EventStore(app[REDIS], app[KEYS]), ProjectionWaiter(app[REDIS], app[KEYS]), wait_timeout_s=0
    )
    config = sched.ScheduleConfig(workflow_id="none", spec=Spec.model_validate(SPEC), tags=["f"])
    command = sched.ApplySchedule("m", config, paused, Managed(source="files/m.yaml"))
    await commands.execute(SCHEDULES, "m", command, RequestContext())


async def settled(redis: Redis, keys: Keyspace) -> None:
    """Wait (bounded) until the live projector has applied the whole log."""
    deadline = time.monotonic() + 10
    last = await EventStore(redis, keys).last_position(0)
    while (await redis.hget(keys.checkpoint(0), "position") or b"").decode() != last:
        assert time.monotonic() < deadline, "the live views did not catch up"
        await asyncio.sleep(0.02)


async def test_batches_of_any_size_build_the_views_one_by_one_application_builds(
    api: TestClient, worker: None, redis: Redis, keys: Keyspace
) -> None:
    await history(api)
    await settled(redis, keys)
    live = await dump(redis, keys, "view")
    names = set(live)
    assert {
        "schedule:team/a",
        "schedules:namespaced",
        "workflows",
        "runs:status:succeeded",
    } <= names
    assert any(n.startswith("runs:schedule:") for n in names)
    assert b'"divergence":{"tags"' in live["schedule:m"] and b"files/m.yaml" in live["schedule:m"]
    events = int(await redis.xlen(keys.log(0)))
    entries: Any = await redis.xrange(keys.log(0))
    assert [_decode(0, i, f) for i, f in entries] == [decode_entry(0, i, f) for i, f in entries]
    built = {}
    for label, size in (("one", 1), ("all", 10_000), ("small", 4), ("odd", 7)):
        projector = Projector(redis, keys, name=f"test-{label}", namespace=label, batch_size=size)
        assert await projector.catch_up(0) == events
        built[label] = await dump(redis, keys, label)
    assert built["one"] == live
    for label in ("all", "small", "odd"):
        assert built[label] == built["one"], label


async def test_a_continuing_batch_is_refused_after_a_switch_left_the_same_checkpoint(
    redis: Redis, keys: Keyspace
) -> None:
    commands = CommandService(
        EventStore(redis, keys), ProjectionWaiter(redis, keys), wait_timeout_s=0
    )
    config = sched.ScheduleConfig(workflow_id="w", spec=Spec.model_validate(SPEC))
    await commands.execute(SCHEDULES, "s", sched.CreateSchedule("s", config), RequestContext())
    live = Projector(redis, keys)
    await live.catch_up(0)
    before = await live.checkpoint(0)
    writer = (await redis.hget(keys.checkpoint(0), "writer") or b"").decode()
    assert writer
    # a switch to a shadow built to the same position: the checkpoint reads the same
    await switch_views(redis, keys, 0, Views(live.name, "view"), SHADOW, _shadow(redis, keys))
    assert await live.checkpoint(0) == before
    await commands.execute(SCHEDULES, "s", sched.PauseSchedule("s"), RequestContext())
    events = await EventStore(redis, keys).read(0, before, 100)
    # computed from records the live projector's run carried over the switch: refused
    batch = await live._compute(0, events, None)
    views = await dump(redis, keys, "view")
    assert await live._call(0, before, events, batch, writer, continuing=True) == 0
    assert await dump(redis, keys, "view") == views
    assert await live.checkpoint(0) == before
    assert await live._call(0, before, events, batch, writer, continuing=False) == 1
    assert b'"status":"paused"' in (await redis.get(keys.view(0, "schedule:s")) or b"")


def _shadow(redis: Redis, keys: Keyspace) -> Any:
    async def build() -> None:
        shadow = Projector(redis, keys, name=SHADOW_PROJECTION, namespace=SHADOW_NAMESPACE)
        await shadow.catch_up(0)

    return build
