"""One decision table for the overlap policy, run against the Python rule
(service/domain/fire/overlap.py) and against the fire script on a real Redis, so the
two cannot drift.

Each row: the schedule's overlap policy, whether runs of it are running, how many
runs it holds (none, one, or ``buffer_max``), the workflow's target type, and what
one more fire does: fire, skip, drop, hold, or hold and ask the running runs to
cancel (``hold+cancel``) or to stop at once (``hold+terminate``).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from service.domain.fire import Outcome, overlap_decision, trigger_request
from service.domain.policies import OverlapPolicy
from service.domain.schedule import ScheduleConfig, SchedulePolicy
from service.domain.spec import Spec
from service.store.fires import FireReply, FireScript
from service.store.keys import Keyspace
from tests.conftest import NOW_MS

BUFFER_MAX = 2
RUNNING = ["run_a", "run_b"]

# policy -> outcome for target http, by (running?, runs held): the first three columns
# with nothing running (0, 1, BUFFER_MAX held), the last three with runs running
HTTP: dict[str, tuple[str, ...]] = {
    "skip": ("fire", "fire", "fire", "skip", "skip", "skip"),
    "buffer_one": ("fire", "fire", "fire", "hold", "drop", "drop"),
    "buffer_all": ("fire", "fire", "fire", "hold", "hold", "drop"),
    "cancel_other": ("fire", "fire", "fire", "hold+cancel", "hold+cancel", "drop"),
    "terminate_other": ("fire", "fire", "fire", "hold+terminate", "hold+terminate", "drop"),
    "allow_all": ("fire", "fire", "fire", "fire", "fire", "fire"),
}
# target none: the run is the fire event itself and succeeds at once, so whatever runs
NONE: dict[str, tuple[str, ...]] = {policy: ("fire",) * 6 for policy in HTTP}

COLUMNS = [(False, 0), (False, 1), (False, BUFFER_MAX), (True, 0), (True, 1), (True, BUFFER_MAX)]
TABLE = [
    (policy, running, held, target, expected)
    for target, outcomes in (("http", HTTP), ("none", NONE))
    for policy, row in outcomes.items()
    for (running, held), expected in zip(COLUMNS, row, strict=True)
]


def test_the_table_covers_every_policy() -> None:
    assert {row[0] for row in TABLE} == {p.value for p in OverlapPolicy}
    assert len(TABLE) == len(OverlapPolicy) * len(COLUMNS) * 2


def python_outcome(policy: str, running: bool, held: int, target: str) -> str:
    decision = overlap_decision(
        OverlapPolicy(policy), BUFFER_MAX, target, RUNNING if running else [], held
    )
    if decision.outcome is not Outcome.HOLD or not decision.cancel:
        return decision.outcome.value
    assert sorted(decision.cancel) == RUNNING
    return "hold+terminate" if decision.terminate else "hold+cancel"


async def script_outcome(
    redis: Redis, keys: Keyspace, policy: str, running: bool, held: int, target: str
) -> str:
    sid = "s"
    await redis.hset(keys.state(0, "schedule", sid), mapping={"version": 1, "status": "active"})
    if running:
        await redis.sadd(keys.running(0, sid), *RUNNING)
    for i in range(held):
        await redis.rpush(keys.buffer(0, sid), orjson.dumps({"run_id": f"held_{i}"}))
    config = ScheduleConfig(
        workflow_id="wf",
        spec=Spec(cron=["* * * * *"]),
        policy=SchedulePolicy(buffer_max=BUFFER_MAX),
    )
    request = trigger_request(
        sid, config, target, NOW_MS, "api:test", {}, None, overlap=OverlapPolicy(policy)
    )
    reply = await FireScript(redis, keys).run(request)
    run_id = request.fires[0].run_id
    return await observed(redis, keys, reply, run_id, held)


async def observed(redis: Redis, keys: Keyspace, reply: FireReply, run_id: str, held: int) -> str:
    """What the script did, read back from the log, the buffer and the run hashes."""
    events: list[tuple[str, Any]] = [
        (f[b"type"].decode(), orjson.loads(f[b"data"])) for _, f in await redis.xrange(keys.log(0))
    ]
    types = [t for t, _ in events]
    buffered = await redis.llen(keys.buffer(0, "s"))
    if types == ["FireSkipped"]:
        assert (reply.skipped, reply.fired) == (1, 0) and buffered == held
        return "skip"
    if types == ["FireDropped"]:
        assert (reply.dropped, reply.fired) == (1, 0) and buffered == held
        return "drop"
    assert reply.fired == 1 and types[0] == "ScheduleFired", types
    if not events[0][1]["held"]:
        assert types[1] == "RunQueued" and buffered == held
        return "fire"
    assert buffered == held + 1
    assert await redis.hget(keys.run(0, run_id), "status") == b"buffered"
    cancels = [d for t, d in events if t == "RunCancelRequested"]
    if not cancels:
        assert types == ["ScheduleFired"]
        return "hold"
    assert sorted(c["run_id"] for c in cancels) == RUNNING  # a set: any order
    assert all(c["requested_by"] == run_id for c in cancels)
    modes = {(await redis.hget(keys.run(0, other), "cancel") or b"").decode() for other in RUNNING}
    terminate = {c["terminate"] for c in cancels}
    assert (modes, terminate) in (({"cancel"}, {False}), ({"terminate"}, {True}))
    return "hold+terminate" if terminate == {True} else "hold+cancel"


@pytest.mark.parametrize(("policy", "running", "held", "target", "expected"), TABLE)
async def test_python_and_the_fire_script_follow_the_table(
    redis: Redis, keys: Keyspace, policy: str, running: bool, held: int, target: str, expected: str
) -> None:
    assert python_outcome(policy, running, held, target) == expected
    assert await script_outcome(redis, keys, policy, running, held, target) == expected


async def test_the_script_writes_the_event_models_versions(
    redis: Redis, keys: Keyspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.domain.fire import ScheduleFired
    from service.domain.runs import RunQueued
    from service.store import fires

    monkeypatch.setattr(ScheduleFired, "version", 7)
    monkeypatch.setattr(RunQueued, "version", 3)
    fires.fire_source.cache_clear()
    try:
        await script_outcome(redis, keys, "skip", False, 0, "http")
    finally:
        fires.fire_source.cache_clear()
    written = {f[b"type"]: f[b"v"] for _, f in await redis.xrange(keys.log(0))}
    assert written == {b"ScheduleFired": b"7", b"RunQueued": b"3"}
