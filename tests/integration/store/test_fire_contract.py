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

from service.domain.fire import (
    Outcome,
    Then,
    backfill_requests,
    decide_sequence,
    overlap_decision,
    overlap_rule,
    trigger_request,
)
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


# -- the times of one request (a backfill, a tick's catch-up) ---------------------------
#
# One table for a request of three times, against ``decide_sequence`` and the script:
# the first time is decided by the row above; the others follow it one after another
# (``+follow``), or are queued at once too (``fire*``), or share its skip or drop. The
# last column: the request continues a backfill whose previous chunk's last run still
# runs, so every time follows that run (``follow*``), whatever runs besides.

TIMES = 3
SEQUENCE_COLUMNS = [*COLUMNS, "after"]
SEQUENCE_HTTP: dict[str, tuple[str, ...]] = {
    "skip": ("fire+follow",) * 3 + ("skip*",) * 3 + ("follow*",),
    "buffer_one": ("fire+follow",) * 3 + ("hold+follow", "drop*", "drop*", "follow*"),
    "buffer_all": ("fire+follow",) * 3 + ("hold+follow", "hold+follow", "drop*", "follow*"),
    "cancel_other": ("fire+follow",) * 3
    + ("hold+cancel+follow", "hold+cancel+follow", "drop*", "follow*"),
    "terminate_other": ("fire+follow",) * 3
    + ("hold+terminate+follow", "hold+terminate+follow", "drop*", "follow*"),
    "allow_all": ("fire*",) * 7,
}
SEQUENCE_NONE: dict[str, tuple[str, ...]] = {policy: ("fire*",) * 7 for policy in HTTP}
SEQUENCE_TABLE = [
    (policy, column, target, expected)
    for target, outcomes in (("http", SEQUENCE_HTTP), ("none", SEQUENCE_NONE))
    for policy, row in outcomes.items()
    for column, expected in zip(SEQUENCE_COLUMNS, row, strict=True)
]


def test_the_sequence_table_covers_every_policy() -> None:
    assert {row[0] for row in SEQUENCE_TABLE} == {p.value for p in OverlapPolicy}
    assert len(SEQUENCE_TABLE) == len(OverlapPolicy) * len(SEQUENCE_COLUMNS) * 2


def python_sequence(policy: str, column: Any, target: str) -> str:
    running, held = (True, 0) if column == "after" else column
    rule = overlap_rule(OverlapPolicy(policy), BUFFER_MAX, target)
    decision = decide_sequence(rule, RUNNING if running else [], held, column == "after")
    if decision.then is not Then.FOLLOW:
        assert decision.first.outcome.value == decision.then.value
        return f"{decision.then.value}*"
    first = decision.first
    if first.outcome is Outcome.FOLLOW:
        return "follow*"
    cancel = ("+terminate" if first.terminate else "+cancel") if first.cancel else ""
    return f"{first.outcome.value}{cancel}+follow"


async def script_sequence(
    redis: Redis, keys: Keyspace, policy: str, column: Any, target: str
) -> str:
    """A backfill of three times through the script; what it did, from the log and hashes."""
    sid, after = "s", ""
    running, held = (True, 0) if column == "after" else column
    await redis.hset(keys.state(0, "schedule", sid), mapping={"version": 1, "status": "active"})
    if running:
        await redis.sadd(keys.running(0, sid), *RUNNING)
    for i in range(held):
        await redis.rpush(keys.buffer(0, sid), orjson.dumps({"run_id": f"held_{i}"}))
    if column == "after":  # the previous chunk's last run, still running
        after = "run_b"
        await redis.hset(keys.run(0, after), mapping={"sid": sid, "status": "running"})
    config = ScheduleConfig(
        workflow_id="wf",
        spec=Spec(cron=["* * * * *"]),
        policy=SchedulePolicy(buffer_max=BUFFER_MAX, overlap=OverlapPolicy(policy)),
    )
    times = [NOW_MS + i * 60_000 for i in range(TIMES)]
    [request] = backfill_requests(sid, config, target, times, NOW_MS, "api:test", {})
    request.after = after
    reply = await FireScript(redis, keys).run(request)
    runs = [f.run_id for f in request.fires]
    return await observed_sequence(redis, keys, reply, runs, after, held)


async def observed_sequence(
    redis: Redis, keys: Keyspace, reply: FireReply, runs: list[str], after: str, held: int
) -> str:
    events = [
        (f[b"type"].decode(), orjson.loads(f[b"data"])) for _, f in await redis.xrange(keys.log(0))
    ]
    types = [t for t, _ in events]
    for refused, word in (("FireSkipped", "skip"), ("FireDropped", "drop")):
        if types == [refused] * TIMES:
            assert (reply.fired, reply.skipped + reply.dropped, reply.tail) == (0, TIMES, "")
            return f"{word}*"
    fires = [d for t, d in events if t == "ScheduleFired"]
    assert [f["run_id"] for f in fires] == runs and reply.fired == TIMES
    if not any(f["held"] for f in fires):
        assert types.count("RunQueued") == TIMES and reply.tail == ""
        return "fire*"
    # each later run waits for the one before it: named in its event and in that run's hash
    assert reply.tail == runs[-1]
    assert [f.get("after") for f in fires] == [after or None, *runs[:-1]]
    for before, run_id in zip([after, *runs[:-1]], runs, strict=True):
        if before:
            assert await redis.hget(keys.run(0, before), "next") == run_id.encode()
    statuses = [await redis.hget(keys.run(0, r), "status") for r in runs]
    assert statuses[1:] == [b"buffered"] * (TIMES - 1)
    buffered = await redis.llen(keys.buffer(0, "s"))
    if after:
        assert statuses[0] == b"buffered" and "RunQueued" not in types and buffered == held
        return "follow*"
    if not fires[0]["held"]:
        assert statuses[0] == b"queued" and types.count("RunQueued") == 1 and buffered == held
        return "fire+follow"
    assert statuses[0] == b"buffered" and "RunQueued" not in types and buffered == held + 1
    cancels = [d for t, d in events if t == "RunCancelRequested"]
    if not cancels:
        return "hold+follow"
    assert sorted(c["run_id"] for c in cancels) == RUNNING
    assert all(c["requested_by"] == runs[0] for c in cancels)
    return (
        "hold+terminate+follow"
        if {c["terminate"] for c in cancels} == {True}
        else ("hold+cancel+follow")
    )


@pytest.mark.parametrize(("policy", "column", "target", "expected"), SEQUENCE_TABLE)
async def test_a_requests_times_follow_the_sequence_table(
    redis: Redis, keys: Keyspace, policy: str, column: Any, target: str, expected: str
) -> None:
    assert python_sequence(policy, column, target) == expected
    assert await script_sequence(redis, keys, policy, column, target) == expected
