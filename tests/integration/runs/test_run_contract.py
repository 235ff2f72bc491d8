"""The run lifecycle contract: one table of transitions, run against the domain's
``decide`` and against runs.lua (through ``RunStore``, on the real redis), so the two
cannot drift.

Each row names the steps that bring a run to a status (every one of them is run on
both sides and compared too), then the step under test with its expected reply, the
status after it and the events appended. A row may hold a second run back in the
schedule's buffer (``held``): the script releases it when the first run gives up its
slot, as ``frees_slot`` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from service.domain import runs
from service.domain.runs import (
    Cancel,
    CancelMode,
    Create,
    Finish,
    Release,
    Reply,
    Requeue,
    Revive,
    Run,
    RunCommand,
    RunOutcome,
    RunStatus,
    Start,
    decide,
    frees_slot,
    parse_event,
)
from service.domain.timeutil import to_rfc3339
from service.store.eventstore import as_text
from service.store.keys import Keyspace
from service.store.runs import GROUP, RunStore

NOW = 1_768_478_400_000
SID = "w"  # runs of a workflow: the workflow is their aggregate
RUN, HELD = "run-a", "run-held"
P = 0

# a Start's deliveries and a Finish's attempt are filled in by the harness (see Harness)
START = Start(0, 5)
CREATE, REQUEUE, REVIVE = Create(), Requeue(), Revive()
CANCEL, TERMINATE = Cancel(CancelMode.CANCEL), Cancel(CancelMode.TERMINATE)
CURRENT = -1  # finish with the token of the run's latest attempt, as its worker does


def start(max_deliveries: int) -> Start:
    return Start(0, max_deliveries)


def finish(outcome: RunOutcome, attempt: int | None = CURRENT) -> Finish:
    """``attempt`` None: with any token ('*'); a number: the token of that attempt."""
    return Finish(outcome, attempt)


S, F, R = RunOutcome.SUCCEEDED, RunOutcome.FAILED, RunOutcome.RETRY


@dataclass(frozen=True)
class Row:
    name: str
    given: list[RunCommand]
    step: RunCommand
    reply: Reply
    status: RunStatus | None
    events: list[str]
    held: bool = False
    attempt: int | None = None  # the run's attempt count after the step, when it matters


TABLE = [
    Row("create", [], CREATE, Reply.OK, RunStatus.QUEUED, ["RunQueued"]),
    Row("create an existing run", [CREATE], CREATE, Reply.EXISTS, RunStatus.QUEUED, []),
    Row("start", [CREATE], START, Reply.OK, RunStatus.RUNNING, ["RunStarted"], attempt=1),
    Row("start a reclaimed run", [CREATE, START], START, Reply.OK, RunStatus.RUNNING,
        ["RunStarted"], attempt=2),
    Row("too many deliveries", [CREATE, start(2), start(2)], start(2), Reply.DEAD,
        RunStatus.DEAD_LETTERED, ["RunDeadLettered"]),
    Row("dead-lettering frees the slot", [CREATE, start(1)], start(1), Reply.DEAD,
        RunStatus.DEAD_LETTERED, ["RunDeadLettered", "RunQueued:held"], held=True),
    Row("start a run waiting for its retry", [CREATE, START, finish(R)], START, Reply.DONE,
        RunStatus.RETRYING, []),
    Row("start a finished run", [CREATE, START, finish(S)], START, Reply.DONE,
        RunStatus.SUCCEEDED, []),
    Row("start a run asked to cancel", [CREATE, START, CANCEL], START, Reply.CANCELLED,
        RunStatus.CANCELLED, ["RunCancelled"]),
    Row("start an unknown run", [], START, Reply.GONE, None, []),
    Row("succeed", [CREATE, START], finish(S), Reply.OK, RunStatus.SUCCEEDED,
        ["RunSucceeded"]),
    Row("succeed and release the held run", [CREATE, START], finish(S), Reply.OK,
        RunStatus.SUCCEEDED, ["RunSucceeded", "RunQueued:held"], held=True),
    Row("retry", [CREATE, START], finish(R), Reply.OK, RunStatus.RETRYING,
        ["RunAttemptFailed"]),
    Row("a retry keeps the slot", [CREATE, START], finish(R), Reply.OK, RunStatus.RETRYING,
        ["RunAttemptFailed"], held=True),
    Row("fail", [CREATE, START], finish(F), Reply.OK, RunStatus.FAILED,
        ["RunAttemptFailed", "RunFailed"]),
    Row("time out", [CREATE, START], finish(RunOutcome.TIMED_OUT), Reply.OK,
        RunStatus.TIMED_OUT, ["RunAttemptFailed", "RunTimedOut"]),
    Row("cancelled attempt", [CREATE, START, CANCEL], finish(RunOutcome.CANCELLED), Reply.OK,
        RunStatus.CANCELLED, ["RunCancelled", "RunQueued:held"], held=True),
    Row("dead-lettered attempt", [CREATE, START], finish(RunOutcome.DEAD_LETTERED), Reply.OK,
        RunStatus.DEAD_LETTERED, ["RunDeadLettered"]),
    Row("finish a reclaimed attempt", [CREATE, START, START], finish(S, attempt=1),
        Reply.STALE, RunStatus.RUNNING, []),
    Row("finish a finished run with its token", [CREATE, START, finish(F)], finish(S),
        Reply.STALE, RunStatus.FAILED, []),
    Row("finish a finished run with any token", [CREATE, START, finish(F)], finish(S, None),
        Reply.DONE, RunStatus.FAILED, []),
    Row("finish a queued run with any token", [CREATE], finish(S, None), Reply.OK,
        RunStatus.SUCCEEDED, ["RunSucceeded"]),
    Row("finish an unknown run", [], finish(S, None), Reply.GONE, None, []),
    Row("cancel a running run", [CREATE, START], CANCEL, Reply.REQUESTED, RunStatus.RUNNING,
        ["RunCancelRequested"]),
    Row("cancel it again", [CREATE, START, CANCEL], CANCEL, Reply.REQUESTED,
        RunStatus.RUNNING, []),
    Row("terminate after a cancel", [CREATE, START, CANCEL], TERMINATE, Reply.REQUESTED,
        RunStatus.RUNNING, ["RunCancelRequested"]),
    Row("cancel after a terminate", [CREATE, START, TERMINATE], CANCEL, Reply.REQUESTED,
        RunStatus.RUNNING, []),
    Row("cancel a queued run", [CREATE], CANCEL, Reply.CANCELLED, RunStatus.CANCELLED,
        ["RunCancelled", "RunQueued:held"], held=True),
    Row("cancel a run waiting for its retry", [CREATE, START, finish(R)], CANCEL,
        Reply.CANCELLED, RunStatus.CANCELLED, ["RunCancelled"]),
    Row("cancel a finished run", [CREATE, START, finish(S)], TERMINATE, Reply.DONE,
        RunStatus.SUCCEEDED, []),
    Row("cancel an unknown run", [], CANCEL, Reply.GONE, None, []),
    Row("requeue a due retry", [CREATE, START, finish(R)], REQUEUE, Reply.OK,
        RunStatus.QUEUED, []),
    Row("retry after a retry", [CREATE, START, finish(R), REQUEUE], START, Reply.OK,
        RunStatus.RUNNING, ["RunStarted"], attempt=2),
    Row("requeue a retry cancelled meanwhile", [CREATE, START, finish(R), CANCEL], REQUEUE,
        Reply.DONE, RunStatus.CANCELLED, []),
    Row("revive a failed run", [CREATE, START, finish(F)], REVIVE, Reply.OK,
        RunStatus.QUEUED, ["RunRequeued"]),
    Row("revive a timed-out run", [CREATE, START, finish(RunOutcome.TIMED_OUT)], REVIVE,
        Reply.OK, RunStatus.QUEUED, ["RunRequeued"]),
    Row("revive a dead letter", [CREATE, start(1), start(1)], REVIVE, Reply.OK,
        RunStatus.QUEUED, ["RunRequeued"]),
    Row("a revived run counts on", [CREATE, START, finish(F), REVIVE], START, Reply.OK,
        RunStatus.RUNNING, ["RunStarted"], attempt=2),
    Row("a revived run forgets the cancel asked",
        [CREATE, START, CANCEL, finish(RunOutcome.DEAD_LETTERED), REVIVE], START, Reply.OK,
        RunStatus.RUNNING, ["RunStarted"]),
    Row("revive a succeeded run", [CREATE, START, finish(S)], REVIVE, Reply.NOT_DEAD,
        RunStatus.SUCCEEDED, []),
    Row("revive a cancelled run", [CREATE, CANCEL], REVIVE, Reply.NOT_DEAD,
        RunStatus.CANCELLED, []),
    Row("revive a running run", [CREATE, START], REVIVE, Reply.NOT_DEAD, RunStatus.RUNNING,
        []),
    Row("revive an unknown run", [], REVIVE, Reply.GONE, None, []),
]  # fmt: skip


@dataclass
class Outcome:
    """What one step did to the run (and to the held run, if any)."""

    reply: Reply
    status: RunStatus | None
    events: list[str]
    attempt: int | None = None
    cancel: CancelMode | None = None
    held: RunStatus | None = None


@dataclass
class Domain:
    """The rules: ``decide`` on the run, then ``Release`` on the held run if the step
    freed the slot. Delivery counts and attempt numbers are the worker's and the
    script's bookkeeping; this side keeps them as the harness would see them."""

    run: Run | None = None
    held: Run | None = None
    deliveries: int = 0

    def step(self, command: RunCommand) -> Outcome:
        command = self._concrete(command)
        before = self.run
        decision = decide(before, command)
        self.run = decision.run
        events = [e.type_name() for e in decision.events]
        if isinstance(command, Start) and decision.reply in (Reply.OK, Reply.DEAD):
            self.deliveries += 1
        queued = isinstance(command, Create | Requeue | Revive) and decision.reply is Reply.OK
        if queued:  # a new queue entry: its deliveries count from zero
            self.deliveries = 0
        if self.held is not None and frees_slot(before, self.run):
            released = decide(self.held, Release())
            self.held = released.run
            events += [f"{e.type_name()}:held" for e in released.events]
        return self._outcome(decision.reply, events)

    def _concrete(self, command: RunCommand) -> RunCommand:
        if isinstance(command, Start):
            return Start(self.deliveries, command.max_deliveries)
        if isinstance(command, Finish) and command.attempt == CURRENT:
            return Finish(command.outcome, self.run.attempt if self.run else 0)
        return command

    def _outcome(self, reply: Reply, events: list[str]) -> Outcome:
        run = self.run
        return Outcome(
            reply,
            run.status if run else None,
            events,
            run.attempt if run else None,
            run.cancel if run and run.status not in runs.TERMINAL_STATUSES else None,
            self.held.status if self.held else None,
        )


@dataclass
class Script:
    """runs.lua through RunStore, with a worker's tokens and queue entries."""

    redis: Redis
    keys: Keyspace
    store: RunStore
    held: bool = False
    tokens: dict[int, str] = field(default_factory=dict)
    entry: str = "0-1"
    seen: str = "0-0"  # the last log entry looked at

    async def step(self, command: RunCommand) -> Outcome:
        reply = Reply(await self._call(command))
        return await self._outcome(reply)

    async def _call(self, command: RunCommand) -> str:
        match command:
            case Create():
                trigger = {"type": "api", "source": "test", "label": ""}
                meta = {"actor": "test"}
                return (await self.store.create(SID, RUN, trigger, None, meta=meta, now_ms=NOW))[0]
            case Start():
                await self._read_entry()
                reply, started = await self.store.start(
                    P, SID, "workflow", RUN, self.entry, "c", NOW, to_rfc3339(NOW),
                    command.max_deliveries,
                )  # fmt: skip
                if started is not None:
                    self.tokens[started.attempt] = started.token
                return reply
            case Finish():
                return await self._finish(command)
            case Cancel():
                terminate = command.mode is CancelMode.TERMINATE
                return await self.store.cancel(
                    P, SID, "workflow", RUN, terminate=terminate, actor="test", now_ms=NOW
                )
            case Requeue():
                moved = await self.store.requeue_due(P, NOW)
                return Reply.OK if moved else Reply.DONE  # the run alone is in the timers
            case Revive():
                reply = await self.store.revive(P, SID, "workflow", RUN, actor="t", now_ms=NOW)
                return reply.split(":")[0]
        raise AssertionError(command)

    async def _finish(self, command: Finish) -> str:
        if command.attempt is None:
            token = "*"
        elif command.attempt == CURRENT:
            token = self.tokens[max(self.tokens)] if self.tokens else "none"
        else:
            token = self.tokens[command.attempt]
        outcome = command.outcome
        attempt = int(token.rsplit("/", 1)[1]) if "/" in token else 0
        report = {"run_id": RUN, "attempt": attempt, "error": "boom", "status": 500,
                  "body_excerpt": "", "finished_at": to_rfc3339(NOW)}  # fmt: skip
        retry = {"retry_at": to_rfc3339(NOW)} if outcome is RunOutcome.RETRY else {}
        final: dict[str, Any] = report
        if outcome in (RunOutcome.CANCELLED, RunOutcome.DEAD_LETTERED):
            final = {"run_id": RUN, "reason": "test"}
        reply, _ = await self.store.finish(
            P, SID, "workflow", RUN, outcome=outcome.value, meta={}, now_ms=NOW, token=token,
            entry_id=self.entry,
            attempt_data={**report, **retry} if outcome.records_failed_attempt else None,
            final_data=final, retry_at_ms=NOW,
        )  # fmt: skip
        return reply

    async def _read_entry(self) -> None:
        """The newest queue entry of the run (a start without one redelivers the last)."""
        reply: Any = await self.redis.xreadgroup(GROUP, "c", {self.keys.queue(P): ">"}, count=10)
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                if fields[b"run_id"].decode() == RUN:
                    self.entry = as_text(entry_id)

    async def _outcome(self, reply: Reply) -> Outcome:
        events = await self._new_events()
        run = await self._hash(RUN)
        held = await self._hash(HELD) if self.held else None
        await self._check_bookkeeping(run)
        status = RunStatus(run["status"]) if run else None
        terminal = status in runs.TERMINAL_STATUSES
        cancel = CancelMode(run["cancel"]) if run and run.get("cancel") and not terminal else None
        return Outcome(
            reply,
            status,
            events,
            int(run["attempt"]) if run else None,
            cancel,
            RunStatus(held["status"]) if held else None,
        )

    async def _new_events(self) -> list[str]:
        entries: Any = await self.redis.xrange(self.keys.log(P), min=f"({self.seen}")
        out = []
        for entry_id, fields in entries:
            self.seen = as_text(entry_id)
            name, data = as_text(fields[b"type"]), orjson.loads(fields[b"data"])
            assert parse_event(name, data) is not None, name  # the typed model takes it
            out.append(name if data["run_id"] == RUN else f"{name}:held")
        return out

    async def _hash(self, run_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys.run(P, run_id))
        return {as_text(k): as_text(v) for k, v in raw.items()}

    async def _check_bookkeeping(self, run: dict[str, str]) -> None:
        """The running set and the retry and dead-letter timers follow the status."""
        status = RunStatus(run["status"]) if run else None
        in_flight = await self.redis.sismember(self.keys.running(P, SID), RUN)
        assert bool(in_flight) == (status in runs.IN_FLIGHT_STATUSES)
        retrying = await self.redis.zscore(self.keys.retries(P), RUN) is not None
        assert retrying == (status is RunStatus.RETRYING)
        dead = await self.redis.zscore(self.keys.dead(P), RUN) is not None
        assert dead == (status is RunStatus.DEAD_LETTERED)


async def hold_a_run(redis: Redis, keys: Keyspace, in_buffer: bool = True) -> None:
    """A run held back by the overlap policy, as fire.lua leaves one (only the fire
    script writes buffered runs, so it is written here by hand); not ``in_buffer``: the
    next time of a backfill or catch-up, which waits for the run before it instead."""
    trigger = '{"type":"schedule","source":"","label":""}'
    await redis.hset(
        keys.run(P, HELD),
        mapping={"sid": SID, "workflow_id": SID, "trigger": trigger, "nominal": "",
                 "input": "null", "status": "buffered", "attempt": 0, "deliveries": 0},
    )  # fmt: skip
    held = {"run_id": HELD, "nominal": "", "trigger": trigger, "input": "null",
            "workflow_id": SID}  # fmt: skip
    if in_buffer:
        await redis.rpush(keys.buffer(P, SID), orjson.dumps(held))


@pytest.mark.parametrize("row", TABLE, ids=[row.name for row in TABLE])
async def test_the_domain_and_the_run_script_agree(row: Row, redis: Redis, keys: Keyspace) -> None:
    await redis.xgroup_create(keys.queue(P), GROUP, id="0", mkstream=True)
    domain = Domain(held=Run(RunStatus.BUFFERED) if row.held else None)
    script = Script(redis, keys, RunStore(redis, keys), held=row.held)
    if row.held:
        await hold_a_run(redis, keys)
    for i, command in enumerate([*row.given, row.step]):
        expected, actual = domain.step(command), await script.step(command)
        assert actual == expected, f"step {i + 1} ({command}) of {row.name!r}"
    assert (expected.reply, expected.status, expected.events) == (row.reply, row.status,
                                                                   row.events)  # fmt: skip
    if row.attempt is not None:
        assert expected.attempt == row.attempt
    if row.held and "RunQueued:held" not in row.events:
        assert expected.held is RunStatus.BUFFERED


async def test_the_log_the_script_writes_tells_the_status_it_keeps(
    redis: Redis, keys: Keyspace
) -> None:
    """Folding the events runs.lua appended gives the status in its run hash."""
    await redis.xgroup_create(keys.queue(P), GROUP, id="0", mkstream=True)
    script = Script(redis, keys, RunStore(redis, keys))
    state: Run | None = None
    life: list[RunCommand] = [CREATE, START, finish(R), REQUEUE, START, CANCEL, finish(F), REVIVE]
    for command in life:
        await script.step(command)
        entries: Any = await redis.xrange(keys.log(P))
        logged = [parse_event(as_text(f[b"type"]), orjson.loads(f[b"data"])) for _, f in entries]
        state = runs.fold([e for e in logged if e is not None])
        kept = as_text(await redis.hget(keys.run(P, RUN), "status"))
        if command is not REQUEUE:  # a due retry goes back to the queue without an event
            assert state is not None and state.status == kept, command
    assert state == Run(RunStatus.QUEUED, attempt=2)


@pytest.mark.parametrize("row", [r for r in TABLE if r.held], ids=lambda row: row.name)
async def test_the_next_time_of_a_sequence_is_released_as_a_held_run(
    row: Row, redis: Redis, keys: Keyspace
) -> None:
    """The same rows with the held run waiting for the run itself (named in its hash's
    ``next``, as fire.lua links the times of a backfill) rather than in the buffer."""
    await redis.xgroup_create(keys.queue(P), GROUP, id="0", mkstream=True)
    domain = Domain(held=Run(RunStatus.BUFFERED))
    script = Script(redis, keys, RunStore(redis, keys), held=True)
    await hold_a_run(redis, keys, in_buffer=False)
    for i, command in enumerate([*row.given, row.step]):
        expected, actual = domain.step(command), await script.step(command)
        assert actual == expected, f"step {i + 1} ({command}) of {row.name!r}"
        if i == 0:  # the run exists now: the held one waits for it
            await redis.hset(keys.run(P, RUN), "next", HELD)
    assert (expected.reply, expected.status, expected.events) == (row.reply, row.status,
                                                                   row.events)  # fmt: skip
    assert await redis.llen(keys.buffer(P, SID)) == 0
