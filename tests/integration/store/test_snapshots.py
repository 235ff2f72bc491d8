"""Write-model snapshots stored compact over frozen defaults, against a real Redis."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from service.clock import Clock
from service.commands import SCHEDULES, WORKFLOWS, CommandService, ProjectionWaiter
from service.domain import schedule as sched
from service.domain import workflow as wf
from service.domain.fire import DueSchedule
from service.domain.managed import Managed
from service.domain.policies import ScheduleStatus
from service.store.eventstore import EventStore, Idempotency
from service.store.keys import Keyspace
from service.store.snapshots import SCHEDULE_CONFIG_V1
from service.ticker.due import DueReader

EVERY_FIELD = sched.ScheduleConfig(
    name="nightly report",
    description="sends the report",
    workflow_id="w1",
    spec={
        "cron": ["0 9 * * 1"],
        "intervals": [{"every": "1h", "offset": "5m"}],
        "exclude_cron": ["0 9 25 12 *"],
        "timezone": "Europe/Paris",
        "jitter": "30s",
        "start_at": "2026-01-01T00:00:00Z",
        "end_at": "2027-01-01T00:00:00Z",
    },
    policy={
        "overlap": "buffer_all",
        "catchup": "all",
        "catchup_window": "2d",
        "catchup_max": 7,
        "buffer_max": 3,
        "pause_on_failure": True,
    },
    input={"to": ["ops"], "empty": {}, "zero": 0, "no": False},
    max_actions=12,
    tags=["reports", "weekly"],
)
DEFAULTS = sched.ScheduleConfig(workflow_id="w", spec={"cron": ["0 0 1 1 *"]})


def every_field_state(sid: str) -> sched.ScheduleState:
    declared = EVERY_FIELD.model_copy(update={"name": "as the file says", "max_actions": 1})
    return sched.ScheduleState(
        id=sid,
        config=EVERY_FIELD,
        status=ScheduleStatus.PAUSED,
        note="held for the audit",
        deleted=True,
        managed=Managed(source="schedules/reports.yaml"),
        declared=declared,
        declared_paused=True,
        paused_by_failure=True,
    )


async def write(store: EventStore, kind: str, aid: str, snapshot: dict[str, Any]) -> None:
    await store.append(
        kind,
        aid,
        [sched.SchedulePaused(note="")],
        meta={"actor": "test"},
        expected_version=0,
        snapshot=snapshot,
        idempotency=Idempotency("a:" + uuid.uuid4().hex, "fp", 60_000),
        status=str(snapshot.get("status", "")),
    )


def commands_of(redis: Redis, keys: Keyspace) -> CommandService:
    return CommandService(EventStore(redis, keys), ProjectionWaiter(redis, keys), wait_timeout_s=0)


async def stored_state(redis: Redis, keys: Keyspace, kind: str, aid: str) -> bytes:
    raw = await redis.hget(keys.state(0, kind, aid), "state")
    assert isinstance(raw, bytes)
    return raw


async def test_a_schedule_with_every_field_set_loads_back_the_same(
    redis: Redis, keys: Keyspace
) -> None:
    commands = commands_of(redis, keys)
    state = every_field_state("s1")
    await write(commands.store, "schedule", "s1", SCHEDULES.snapshot(state))
    assert orjson.loads(await stored_state(redis, keys, "schedule", "s1"))["f"] == 1
    assert await commands.load(SCHEDULES, "s1") == (state, 1)


async def test_a_schedule_with_every_default_loads_back_the_same(
    redis: Redis, keys: Keyspace
) -> None:
    commands = commands_of(redis, keys)
    state = sched.ScheduleState(id="s1", config=DEFAULTS)
    await write(commands.store, "schedule", "s1", SCHEDULES.snapshot(state))
    assert await commands.load(SCHEDULES, "s1") == (state, 1)
    managed = sched.ScheduleState(
        id="s2", config=DEFAULTS, managed=Managed(source="a.yaml"), declared=DEFAULTS
    )
    await write(commands.store, "schedule", "s2", SCHEDULES.snapshot(managed))
    assert await commands.load(SCHEDULES, "s2") == (managed, 1)
    assert orjson.loads(await stored_state(redis, keys, "schedule", "s2"))["declared"] is True


async def test_an_old_full_snapshot_loads_to_the_state_a_compact_one_does(
    redis: Redis, keys: Keyspace
) -> None:
    commands = commands_of(redis, keys)
    cases = (("old", every_field_state("x")), ("plain", sched.ScheduleState("x", DEFAULTS)))
    for sid, state in cases:
        full = SCHEDULES.snapshot(state)
        await redis.hset(
            keys.state(0, "schedule", sid),
            mapping={"version": 3, "state": orjson.dumps(full), "status": "deleted"},
        )
        await write(commands.store, "schedule", sid + "-new", full)
        assert "f" in orjson.loads(await stored_state(redis, keys, "schedule", sid + "-new"))
        old, _ = await commands.load(SCHEDULES, sid)
        new, _ = await commands.load(SCHEDULES, sid + "-new")
        assert replace(old, id="x") == replace(new, id="x") == state


async def test_the_stored_schedule_snapshot_keeps_only_what_differs_from_the_defaults(
    redis: Redis, keys: Keyspace
) -> None:
    store = EventStore(redis, keys)
    state = sched.ScheduleState(id="s1", config=DEFAULTS)
    await write(store, "schedule", "s1", SCHEDULES.snapshot(state))
    stored = await stored_state(redis, keys, "schedule", "s1")
    # whole, this snapshot is some 400 bytes: too long for Redis's small hash encoding
    assert len(stored) <= 80, stored
    config = {"workflow_id": "w", "spec": {"cron": ["0 0 1 1 *"]}}
    assert orjson.loads(stored) == {"f": 1, "config": config}


async def test_a_workflow_snapshot_is_stored_compact_and_loads_back_the_same(
    redis: Redis, keys: Keyspace
) -> None:
    commands = commands_of(redis, keys)
    plain = wf.WorkflowState(id="w1", config=wf.WorkflowConfig(target={"type": "none"}))
    kept = wf.WorkflowState(
        id="w2",
        config=wf.WorkflowConfig(
            name="report",
            target={"type": "http", "url": "https://example.com/hook", "method": "PUT"},
            input_schema={"type": "object"},
            retry={"max_attempts": 5, "backoff": 3},
            timeout="1m",
        ),
        deleted=True,
        managed=Managed(source="w.yaml"),
    )
    for state in (plain, kept):
        await write(commands.store, "workflow", state.id, WORKFLOWS.snapshot(state))
        assert orjson.loads(await stored_state(redis, keys, "workflow", state.id))["f"] == 1
        assert await commands.load(WORKFLOWS, state.id) == (state, 1)
    assert len(await stored_state(redis, keys, "workflow", "w1")) <= 48


async def test_the_ticker_reads_configs_and_targets_of_compact_and_old_snapshots(
    redis: Redis, keys: Keyspace, clock: Clock
) -> None:
    store = EventStore(redis, keys)
    await write(store, "schedule", "s1", SCHEDULES.snapshot(every_field_state("s1")))
    assert orjson.loads(await stored_state(redis, keys, "schedule", "s1"))["f"] == 1
    old = orjson.dumps(SCHEDULES.snapshot(sched.ScheduleState("s2", DEFAULTS)))
    await redis.hset(keys.state(0, "schedule", "s2"), mapping={"version": 4, "state": old})
    workflow = wf.WorkflowState(id="w1", config=wf.WorkflowConfig(target={"type": "none"}))
    await write(store, "workflow", "w1", WORKFLOWS.snapshot(workflow))
    reader = DueReader(redis, keys, clock, batch_size=100)
    due = [DueSchedule("s1", 1, "active", 0, 0), DueSchedule("s2", 4, "active", 0, 0)]
    await reader.load_configs(0, due)
    assert [reader.config(d) for d in due] == [EVERY_FIELD, DEFAULTS]
    assert await reader.targets({"w1"}) == {"w1": "none"}


async def test_an_idle_schedules_state_hash_uses_the_small_encoding(
    redis: Redis, keys: Keyspace
) -> None:
    store = EventStore(redis, keys)
    applied = sched.ScheduleConfig(
        name="daily backup of the orders database",
        workflow_id="backup-orders",
        spec={"cron": ["15 3 * * *"], "timezone": "Europe/Berlin"},
        tags=["backup"],
    )
    managed = Managed(source="schedules/backups/orders.yaml")
    states = {
        "plain": sched.ScheduleState("plain", DEFAULTS),
        "applied": sched.ScheduleState("applied", applied, managed=managed, declared=applied),
    }
    for sid, state in states.items():
        await store.append(
            "schedule",
            sid,
            [sched.ScheduleCreated(schedule=state.config)],
            meta={"actor": "test", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
            expected_version=0,
            snapshot=SCHEDULES.snapshot(state),
            idempotency=Idempotency("a:" + uuid.uuid4().hex, "fp", 60_000),
            status="active",
        )
        encoding = await redis.object("encoding", keys.state(0, "schedule", sid))
        assert encoding in (b"listpack", b"ziplist"), (sid, encoding)


async def test_a_compact_snapshot_means_what_its_template_says_not_a_model_default(
    redis: Redis, keys: Keyspace, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as if the model's default catch-up had moved from "all" to "latest" since the
    # snapshot was written: its stored form leaves out the "all" of its time
    monkeypatch.setitem(SCHEDULE_CONFIG_V1["policy"], "catchup", "all")
    config = sched.ScheduleConfig(
        workflow_id="w", spec={"cron": ["0 0 1 1 *"]}, policy={"catchup": "all"}
    )
    commands = commands_of(redis, keys)
    await write(
        commands.store, "schedule", "s1", SCHEDULES.snapshot(sched.ScheduleState("s1", config))
    )
    assert "policy" not in orjson.loads(await stored_state(redis, keys, "schedule", "s1"))["config"]
    state, _ = await commands.load(SCHEDULES, "s1")
    reader = DueReader(redis, keys, clock, batch_size=100)
    due = DueSchedule("s1", 1, "active", 0, 0)
    await reader.load_configs(0, [due])
    assert state is not None and state.config == config == reader.config(due)
