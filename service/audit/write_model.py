"""Rebuild the write model (what the scripts keep beside the log) from the log alone.

After a restore the log is back but nothing else is. This folds each partition's
log, in order, into what append.lua, fire.lua and runs.lua would have left:

- ``state:<kind>:<id>`` hashes: ``state`` (the snapshot ``evolve`` gives, exactly as
  append.lua stores it), ``version`` (one per command event, plus one for
  ``ScheduleCompleted``, as fire.lua counts it), ``status`` (the aggregate's status,
  ``completed`` after ``ScheduleCompleted``), ``actions`` (scheduled fires) and
  ``traceparent`` (of the last command that carried one);
- ``events:<kind>:<id>`` lists of log ids;
- ``hwm``: the newest nominal time decided per schedule (fired, skipped, dropped or
  missed by the ticker), or the time of the last command that reset it;
- ``due``: every active schedule at Redis's now, so the ticker plans it again;
- run hashes of runs that are not finished (queued and running runs are queued
  again, runs waiting for a retry go back to the retry timers, held runs back to
  their schedule's buffer), the ``running`` sets, and dead-lettered runs (so they
  can still be revived).

It is meant for a keyspace whose write model is gone: it replaces the state
hashes and event lists of each partition and adds run bookkeeping next to what
is there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from service.commands import SCHEDULES, WORKFLOWS, Aggregate
from service.domain import schedule as sched
from service.domain.events import event_class
from service.domain.runs import (
    IN_FLIGHT_STATUSES,
    RUN_EVENTS,
    TERMINAL_STATUSES,
    Run,
    RunAttemptFailed,
    RunQueued,
    RunStarted,
    RunStatus,
    evolve,
    parse_event,
)
from service.domain.timeutil import parse_instant
from service.store import snapshots
from service.store.eventstore import StoredEvent, as_text, decode_entry
from service.store.keys import Keyspace
from service.store.runs import GROUP

PAGE = 1000
MAX_PAGES = 1 << 40

COMMANDS: dict[str, Aggregate[Any, Any]] = {
    **{
        name: SCHEDULES
        for name in (
            "ScheduleCreated",
            "ScheduleUpdated",
            "SchedulePaused",
            "ScheduleResumed",
            "ScheduleDeleted",
        )
    },
    **{name: WORKFLOWS for name in ("WorkflowCreated", "WorkflowUpdated", "WorkflowDeleted")},
}
RESETS_DUE = frozenset({"ScheduleCreated", "ScheduleUpdated", "ScheduleResumed"})


@dataclass
class _Record:
    """One aggregate's write-model hash as the scripts would have left it."""

    kind: str
    stored: dict[str, Any] | None = None
    status: str = ""
    version: int = 0
    actions: int | None = None
    traceparent: str | None = None
    hwm: int = 0


@dataclass
class _Run:
    sid: str
    kind: str
    fields: dict[str, Any]
    state: Run
    retry_at: int = 0
    dead_at: int = 0
    held: dict[str, Any] | None = None


@dataclass
class WriteModelReport:
    events: int = 0
    aggregates: int = 0
    runs: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class _Fold:
    """The write model of one partition, event by event."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], _Record] = {}
        self.runs: dict[str, _Run] = {}
        self.workflow_runs: set[str] = set()
        self.buffers: dict[str, list[str]] = {}

    def record(self, kind: str, sid: str) -> _Record:
        found = self.records.get((kind, sid))
        if found is None:
            found = self.records[(kind, sid)] = _Record(kind)
        return found

    def kind_of(self, event: StoredEvent) -> str:
        """Which aggregate's event list the script that wrote ``event`` pushed it to."""
        if event.type in COMMANDS:
            return COMMANDS[event.type].kind
        run_id = event.data.get("run_id")
        if event.type == "RunQueued" and event.data.get("schedule_id") is None:
            self.workflow_runs.add(str(run_id))
        return "workflow" if run_id in self.workflow_runs else "schedule"

    def apply(self, event: StoredEvent) -> str:
        kind = self.kind_of(event)
        handler = _HANDLERS.get(event.type)
        if event.type in COMMANDS:
            self._command(COMMANDS[event.type], event)
        elif handler is not None:
            handler(self, event)
        return kind

    def _command(self, aggregate: Aggregate[Any, Any], event: StoredEvent) -> None:
        rec = self.record(aggregate.kind, event.sid)
        snapshot = dict(rec.stored) if rec.stored is not None else None
        if snapshot is not None and rec.status in ("active", "paused", "completed"):
            snapshot["status"] = rec.status  # as EventStore.load hands it to decide
        state = aggregate.restore(event.sid, snapshot) if snapshot is not None else None
        cls = event_class(event.type)
        assert cls is not None
        new = aggregate.evolve(state, event.sid, cls.model_validate(event.data))
        assert new is not None
        rec.stored = aggregate.snapshot(new)
        rec.status = aggregate.status(new)
        rec.version += 1
        if isinstance(event.meta.get("traceparent"), str):
            rec.traceparent = event.meta["traceparent"]
        if aggregate is SCHEDULES and rec.status == "active":
            if rec.actions is None:
                rec.actions = 0  # the ticker looks at it at once and starts the count
            if event.type in RESETS_DUE:
                rec.hwm = max(rec.hwm, int(event.meta.get("effective_at", event.at)))

    def _decided(self, event: StoredEvent, nominal: str, scheduled: bool) -> None:
        if scheduled:
            rec = self.record(sched.KIND, event.sid)
            rec.hwm = max(rec.hwm, parse_instant(nominal))

    def _fired(self, event: StoredEvent) -> None:
        data = event.data
        scheduled = data.get("trigger") == "schedule"
        self._decided(event, data["nominal_time"], scheduled)
        if scheduled:
            rec = self.record(sched.KIND, event.sid)
            rec.actions = (rec.actions or 0) + 1
        if data.get("held"):
            self._hold(event)

    def _hold(self, event: StoredEvent) -> None:
        """A fire held back by the overlap policy: a buffered run of the schedule."""
        rec = self.record(sched.KIND, event.sid)
        config = (rec.stored or {}).get("config", {})
        run_id = event.data["run_id"]
        trigger = {"type": event.data.get("trigger", "schedule"), "source": "", "label": ""}
        held = {
            "run_id": run_id,
            "nominal": event.data["nominal_time"],
            "trigger": orjson.dumps(trigger).decode(),
            "input": orjson.dumps(config.get("input")).decode(),
            "workflow_id": config.get("workflow_id", ""),
        }
        fields = {
            "sid": event.sid,
            "workflow_id": held["workflow_id"],
            "trigger": held["trigger"],
            "nominal": held["nominal"],
            "input": held["input"],
            "attempt": 0,
            "deliveries": 0,
        }
        buffered = Run(RunStatus.BUFFERED)
        self.runs[run_id] = _Run(event.sid, sched.KIND, fields, buffered, held=held)
        self.buffers.setdefault(event.sid, []).append(run_id)

    def _skipped(self, event: StoredEvent) -> None:
        scheduled = str(event.data.get("fire_id", "")).endswith(":schedule")
        self._decided(event, event.data["nominal_time"], scheduled)

    def _missed(self, event: StoredEvent) -> None:
        self._decided(event, event.data["last"], True)

    def _completed(self, event: StoredEvent) -> None:
        rec = self.record(sched.KIND, event.sid)
        rec.status = "completed"
        rec.version += 1
        rec.actions = int(event.data["action_count"])

    def _queued(self, event: StoredEvent) -> None:
        data = event.data
        run_id = data["run_id"]
        kind = "workflow" if run_id in self.workflow_runs else sched.KIND
        earlier = self.runs.get(run_id)
        if earlier is not None and earlier.held is not None:
            self.buffers[earlier.sid].remove(run_id)
        fields: dict[str, Any] = {
            "sid": event.sid,
            "workflow_id": data["workflow_id"],
            "trigger": orjson.dumps(data["trigger"]).decode(),
            "nominal": data.get("nominal_time") or "",
            "input": orjson.dumps(data.get("input")).decode(),
            "attempt": 0,
            "deliveries": 0,
        }
        if kind == "workflow":
            fields["kind"] = "workflow"
        # a new run hash, as the script that queued (or released) it writes one
        state = evolve(None, RunQueued.model_validate(data))
        assert state is not None
        self.runs[run_id] = _Run(event.sid, kind, fields, state)

    def _run_event(self, event: StoredEvent) -> None:
        typed = parse_event(event.type, event.data)
        run = self.runs.get(typed.run_id) if typed is not None else None
        if typed is None or run is None:
            return
        state = evolve(run.state, typed)
        assert state is not None
        run.state = state
        if isinstance(typed, RunStarted):
            run.fields["attempt"] = typed.attempt
        elif isinstance(typed, RunAttemptFailed) and typed.retry_at is not None:
            run.retry_at = parse_instant(typed.retry_at)
        if state.status in TERMINAL_STATUSES:
            run.dead_at = event.at
            if state.status is not RunStatus.DEAD_LETTERED:
                del self.runs[typed.run_id]  # a finished run needs no bookkeeping


_HANDLERS: dict[str, Callable[[_Fold, StoredEvent], None]] = {
    "ScheduleFired": _Fold._fired,
    "FireSkipped": _Fold._skipped,
    "FireDropped": _Fold._skipped,
    "FiresMissed": _Fold._missed,
    "ScheduleCompleted": _Fold._completed,
    "RunQueued": _Fold._queued,
    **{name: _Fold._run_event for name in RUN_EVENTS if name != "RunQueued"},
}


async def _drop_derived(redis: Redis, keys: Keyspace, p: int) -> None:
    for pattern in (keys.state(p, "*", "*"), keys.aggregate_events(p, "*", "*")):
        batch: list[Any] = []
        async for key in redis.scan_iter(match=pattern.replace("[", "\\["), count=1000):
            batch.append(key)
            if len(batch) >= PAGE:
                await redis.delete(*batch)
                batch = []
        if batch:
            await redis.delete(*batch)
    await redis.delete(keys.due(p), keys.hwm(p))


async def _fold_partition(redis: Redis, keys: Keyspace, p: int, report: WriteModelReport) -> _Fold:
    """Fold the partition's log, pushing each event id onto its aggregate's list."""
    fold = _Fold()
    start = "-"
    for _ in range(MAX_PAGES):
        page: Any = await redis.xrange(keys.log(p), min=start, count=PAGE)
        if not page:
            break
        async with redis.pipeline(transaction=False) as pipe:
            for raw_id, fields in page:
                event = decode_entry(p, raw_id, fields)
                kind = fold.apply(event)
                pipe.rpush(keys.aggregate_events(p, kind, event.sid), event.position)
            await pipe.execute()
        report.events += len(page)
        start = f"({as_text(page[-1][0])}"
    return fold


async def _write_records(redis: Redis, keys: Keyspace, p: int, fold: _Fold, now: int) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for (kind, sid), rec in fold.records.items():
            if rec.stored is None:
                continue  # fire or run events of an aggregate with no command: no state
            mapping: Any = {
                "version": rec.version,
                "state": orjson.dumps(snapshots.compact(kind, rec.stored)),
                "status": rec.status,
            }
            if rec.actions is not None:
                mapping["actions"] = rec.actions
            if rec.traceparent is not None:
                mapping["traceparent"] = rec.traceparent
            pipe.hset(keys.state(p, kind, sid), mapping=mapping)
            if kind == sched.KIND and rec.hwm:
                pipe.hset(keys.hwm(p), sid, rec.hwm)
            if kind == sched.KIND and rec.status == "active":
                pipe.zadd(keys.due(p), {sid: now})
        await pipe.execute()


def _restored_status(run: Run) -> RunStatus:
    """A running run's worker went with the old keyspace: its attempt starts again."""
    return RunStatus.QUEUED if run.status is RunStatus.RUNNING else run.status


async def _write_runs(
    redis: Redis, keys: Keyspace, p: int, fold: _Fold, report: WriteModelReport
) -> None:
    try:
        await redis.xgroup_create(keys.queue(p), GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    async with redis.pipeline(transaction=False) as pipe:
        for run_id, run in fold.runs.items():
            status = _restored_status(run.state)
            report.runs[status.value] = report.runs.get(status.value, 0) + 1
            fields: Any = {**run.fields, "status": status.value}
            if run.state.cancel is not None:
                fields["cancel"] = run.state.cancel.value
            pipe.hset(keys.run(p, run_id), mapping=fields)
            if status in IN_FLIGHT_STATUSES:
                pipe.sadd(keys.running(p, run.sid), run_id)
            if status is RunStatus.QUEUED:
                kind = run.fields.get("kind", "schedule")
                pipe.xadd(keys.queue(p), {"run_id": run_id, "sid": run.sid, "kind": kind})
            elif status is RunStatus.RETRYING:
                pipe.zadd(keys.retries(p), {run_id: run.retry_at})
            elif status is RunStatus.DEAD_LETTERED:
                pipe.zadd(keys.dead(p), {run_id: run.dead_at})
        for sid, held in fold.buffers.items():
            for run_id in held:
                buffered = fold.runs[run_id].held
                pipe.rpush(keys.buffer(p, sid), orjson.dumps(buffered))
        await pipe.execute()


async def rebuild_write_model(redis: Redis, keys: Keyspace) -> WriteModelReport:
    """Rebuild every partition's write model from its log (see the module docstring)."""
    started = time.perf_counter()
    report = WriteModelReport()
    seconds, micros = await redis.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    for p in range(keys.partitions):
        await _drop_derived(redis, keys, p)
        fold = await _fold_partition(redis, keys, p, report)
        await _write_records(redis, keys, p, fold, now)
        await _write_runs(redis, keys, p, fold, report)
        report.aggregates += sum(1 for rec in fold.records.values() if rec.stored is not None)
    report.seconds = time.perf_counter() - started
    return report
