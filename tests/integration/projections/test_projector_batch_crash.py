"""A projector process killed (SIGKILL) while it applies a backlog loses nothing and
applies nothing twice: the views it leaves, carried on from its checkpoint, equal
views built from the log by a projector that was never interrupted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
from redis.asyncio import Redis

from migrations.keyspace import check_keyspace
from projections.projector import Projector
from service.commands import SCHEDULES, WORKFLOWS, CommandService, ProjectionWaiter, RequestContext
from service.domain import schedule as sched
from service.domain import workflow as wf
from service.domain.fire.events import ScheduleFired
from service.domain.runs import RunQueued, RunSucceeded
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.store.scripts import prelude
from tests.integration.projections.test_projector_batch import dump
from tests.process import Service

SCHEDULES_COUNT = 50
FIRES = 3000
PER_CALL = 500

# per fire the events fire.lua appends for a workflow with no target
FIRE_BODY = """
local trigger = cjson.encode({type = 'schedule', source = '', label = ''})
for i = 1, #ARGV, 2 do
  local sid, run_id = ARGV[i], ARGV[i + 1]
  chain_append(KEYS[1], KEYS[2], false, 'ScheduleFired', versions.ScheduleFired, sid,
    cjson.encode({fire_id = run_id, nominal_time = '2026-01-01T00:00:00Z',
      fire_time = '2026-01-01T00:00:00Z', epoch = 1, trigger = 'schedule', run_id = run_id,
      held = false}), '{}')
  chain_append(KEYS[1], KEYS[2], false, 'RunQueued', versions.RunQueued, sid,
    run_queued_json(run_id, sid, 'w', trigger, '2026-01-01T00:00:00Z', 'null'), '{}')
  chain_append(KEYS[1], KEYS[2], false, 'RunSucceeded', versions.RunSucceeded, sid,
    '{"run_id":' .. cjson.encode(run_id) .. ',"attempt":0}', '{}')
end
return 1
"""


async def backlog(redis: Redis, keys: Keyspace) -> None:
    versions = ", ".join(
        f"{cls.type_name()} = '{cls.version}'" for cls in (ScheduleFired, RunQueued, RunSucceeded)
    )
    script = redis.register_script(f"local versions = {{{versions}}}\n" + prelude() + FIRE_BODY)
    for start in range(0, FIRES, PER_CALL):
        args = []
        for i in range(start, start + PER_CALL):
            args += [f"s{i % SCHEDULES_COUNT}", f"r{i:06d}"]
        await script(keys=[keys.log(0), keys.chain(0)], args=args)


async def schedules(redis: Redis, keys: Keyspace) -> None:
    commands = CommandService(
        EventStore(redis, keys), ProjectionWaiter(redis, keys), wait_timeout_s=0
    )
    ctx = RequestContext()
    target = wf.WorkflowConfig.model_validate({"target": {"type": "none"}})
    await commands.execute(WORKFLOWS, "w", wf.PutWorkflow("w", target), ctx)
    config = sched.ScheduleConfig.model_validate(
        {"workflow_id": "w", "spec": {"intervals": [{"every": "1h"}]}, "tags": ["t"]}
    )
    for i in range(SCHEDULES_COUNT):
        await commands.execute(SCHEDULES, f"s{i}", sched.CreateSchedule(f"s{i}", config), ctx)


async def test_a_projector_killed_mid_backlog_loses_and_repeats_nothing(
    redis: Redis, redis_url: str, keys: Keyspace, tmp_path: Path
) -> None:
    await check_keyspace(redis, keys)  # stamp the fresh keyspace, as serve would
    await schedules(redis, keys)
    live = Projector(redis, keys)
    await live.catch_up(0)
    before = await live.checkpoint(0)
    await backlog(redis, keys)
    end = await EventStore(redis, keys).last_position(0)
    service = Service(tmp_path / "p", redis_url=redis_url, roles="projector")
    try:
        deadline = time.monotonic() + 30
        while await live.checkpoint(0) == before:
            assert service.process.poll() is None, service.output()
            assert time.monotonic() < deadline, "the projector process applied nothing"
            await asyncio.sleep(0.002)
        service.process.kill()
        service.process.wait(timeout=10)
    finally:
        service.stop()
    left = await live.checkpoint(0)
    assert left not in (before, end), "the kill did not land while the backlog was applied"
    assert await live.catch_up(0) > 0
    reference = Projector(redis, keys, name="reference", namespace="reference")
    await reference.catch_up(0)
    views = await dump(redis, keys, "view")
    assert views == await dump(redis, keys, "reference")
    counts = [
        int(orjson.loads(views[f"schedule:s{i}"])["info"]["action_count"])
        for i in range(SCHEDULES_COUNT)
    ]
    assert counts == [FIRES // SCHEDULES_COUNT] * SCHEDULES_COUNT
    assert len(views["runs"]) == len(views["runs:status:succeeded"]) == FIRES
