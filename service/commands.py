"""Command handling: load the write model, decide, append, then wait for the views.

This is the application layer between the API and the domain: it owns the retry
loop of optimistic concurrency, idempotency bookkeeping and read-your-writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import jsonschema
from redis.asyncio import Redis

from service import telemetry
from service.clock import Clock
from service.domain import schedule as sched
from service.domain import workflow as wf
from service.domain.addresses import PUBLIC_ONLY, OutboundPolicy
from service.domain.events import Event
from service.domain.managed import Managed
from service.domain.policies import ScheduleStatus
from service.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    VersionMismatch,
    WorkflowInUse,
    WorkflowNotFound,
    bare_id,
)
from service.store.boundary import translate_redis_errors
from service.store.eventstore import (
    AppendResult,
    EventStore,
    Idempotency,
    as_text,
    parse_position,
)
from service.store.keys import Keyspace

CONCURRENCY_RETRIES = 8
AUTO_KEY_TTL_MS = 10 * 60 * 1000

S = TypeVar("S")
C = TypeVar("C")


@dataclass(frozen=True)
class RequestContext:
    """Who sent a command and how it may be retried."""

    actor: str = "anonymous"
    idempotency_key: str | None = None
    fingerprint: str = ""
    if_match: int | None = None
    traceparent: str | None = None
    correlation_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def storage_key(self) -> str:
        if self.idempotency_key is None:
            return "a:" + uuid.uuid4().hex
        return "u:" + hashlib.sha256(self.idempotency_key.encode()).hexdigest()[:40]

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "actor": self.actor,
            "correlation_id": self.correlation_id,
            "wall_time": int(time.time() * 1000),
        }
        if self.idempotency_key is not None:
            meta["idempotency_key"] = self.idempotency_key
        current = telemetry.current_traceparent()
        if current or self.traceparent:
            meta["traceparent"] = current or self.traceparent
        return meta


@dataclass(frozen=True)
class Aggregate(Generic[S, C]):
    """How to load, decide and persist one kind of aggregate."""

    kind: str
    restore: Callable[[str, dict[str, Any]], S]
    snapshot: Callable[[S], dict[str, Any]]
    decide: Callable[[S | None, C], list[Event]]
    evolve: Callable[[S | None, str, Event], S | None]
    status: Callable[[S], str] = lambda _state: ""
    due_change: Callable[[S, list[Event]], str] = lambda _state, _events: ""


def _schedule_snapshot(state: sched.ScheduleState) -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "config": state.config.model_dump(mode="json"),
        "status": str(state.status),
        "note": state.note,
        "deleted": state.deleted,
    }
    if state.paused_by_failure:
        snapshot["paused_by_failure"] = True
    if state.managed is not None:
        snapshot["managed"] = state.managed.model_dump(mode="json")
        declared = state.declared
        if declared is state.config:  # as after an apply: one dump serves both
            snapshot["declared"] = snapshot["config"]
        else:
            snapshot["declared"] = declared.model_dump(mode="json") if declared else None
        snapshot["declared_paused"] = state.declared_paused
    return snapshot


def _schedule_restore(sid: str, data: dict[str, Any]) -> sched.ScheduleState:
    managed, declared = data.get("managed"), data.get("declared")
    return sched.ScheduleState(
        id=sid,
        config=sched.ScheduleConfig.model_validate(data["config"]),
        status=ScheduleStatus(data["status"]),
        note=data.get("note", ""),
        deleted=bool(data.get("deleted")),
        managed=Managed.model_validate(managed) if managed is not None else None,
        declared=sched.ScheduleConfig.model_validate(declared) if declared is not None else None,
        declared_paused=bool(data.get("declared_paused")),
        paused_by_failure=bool(data.get("paused_by_failure")),
    )


def _workflow_snapshot(state: wf.WorkflowState) -> dict[str, Any]:
    snapshot = {"config": state.config.model_dump(mode="json"), "deleted": state.deleted}
    if state.managed is not None:
        snapshot["managed"] = state.managed.model_dump(mode="json")
    return snapshot


def _workflow_restore(wid: str, data: dict[str, Any]) -> wf.WorkflowState:
    managed = data.get("managed")
    return wf.WorkflowState(
        id=wid,
        config=wf.WorkflowConfig.model_validate(data["config"]),
        deleted=bool(data.get("deleted")),
        managed=Managed.model_validate(managed) if managed is not None else None,
    )


def _schedule_status(state: sched.ScheduleState) -> str:
    return "deleted" if state.deleted else str(state.status)


def _schedule_due_change(state: sched.ScheduleState, events: list[Event]) -> str:
    """How the ticker's due index follows a command: look again now, or forget it."""
    if state.deleted or state.status is not ScheduleStatus.ACTIVE:
        return "drop"
    touching = (sched.ScheduleCreated, sched.ScheduleUpdated, sched.ScheduleResumed)
    return "reset" if any(isinstance(e, touching) for e in events) else ""


SCHEDULES: Aggregate[sched.ScheduleState, sched.ScheduleCommand] = Aggregate(
    sched.KIND,
    _schedule_restore,
    _schedule_snapshot,
    sched.decide,
    sched.evolve,
    _schedule_status,
    _schedule_due_change,
)
WORKFLOWS: Aggregate[wf.WorkflowState, wf.WorkflowCommand] = Aggregate(
    wf.KIND, _workflow_restore, _workflow_snapshot, wf.decide, wf.evolve
)


@dataclass(frozen=True)
class Outcome:
    """What a command did: the append (if any) and the version after it."""

    version: int
    positions: list[str]
    duplicate: bool = False
    created: bool = False


class ProjectionWaiter:
    """Waits, with a deadline, until a partition's views include a log position.

    A projector in the same process reports each applied batch (``applied``), so a
    write usually waits on an in-memory event; the checkpoint in Redis is read too,
    less often, for views that another process's projector applied.
    """

    REDIS_CHECK_S = 0.02

    def __init__(self, redis: Redis, keys: Keyspace) -> None:
        self.redis = redis
        self.keys = keys
        self._applied: dict[int, tuple[int, int]] = {}
        self._changed = asyncio.Event()

    def applied(self, partition: int, position: str) -> None:
        self._applied[partition] = parse_position(position)
        self._changed.set()
        self._changed = asyncio.Event()

    @translate_redis_errors
    async def wait(self, partition: int, position: str, timeout_s: float) -> bool:
        target = parse_position(position)
        deadline = time.monotonic() + timeout_s
        key = self.keys.checkpoint(partition)
        delay = 0.0005
        while True:
            local = self._applied.get(partition)
            if local is not None and local >= target:
                return True
            raw = await self.redis.hget(key, "position")
            if raw is not None and parse_position(as_text(raw)) >= target:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pause = min(remaining, self.REDIS_CHECK_S if self._applied else delay)
            delay = min(delay * 2, self.REDIS_CHECK_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=pause)


class CommandService:
    def __init__(
        self,
        store: EventStore,
        waiter: ProjectionWaiter,
        *,
        wait_timeout_s: float = 5.0,
        idempotency_ttl_ms: int = 24 * 3600 * 1000,
        clock: Clock | None = None,
        outbound: OutboundPolicy = PUBLIC_ONLY,
    ) -> None:
        self.clock = clock
        self.outbound = outbound  # where workflows may point their webhooks
        self.store = store
        self.waiter = waiter
        self.wait_timeout_s = wait_timeout_s
        self.ttl_ms = idempotency_ttl_ms

    async def load(self, aggregate: Aggregate[Any, Any], aggregate_id: str) -> tuple[Any, int]:
        snapshot, version = await self.store.load(aggregate.kind, aggregate_id)
        state = aggregate.restore(aggregate_id, snapshot) if snapshot is not None else None
        return state, version

    async def execute(
        self,
        aggregate: Aggregate[S, C],
        aggregate_id: str,
        command: C,
        ctx: RequestContext,
        check: Callable[[S | None], Any] | None = None,
    ) -> Outcome:
        """Decide and append ``command``, retrying on concurrent change unless If-Match was set."""
        key = ctx.storage_key()
        for _ in range(CONCURRENCY_RETRIES):
            state, version = await self.load(aggregate, aggregate_id)
            if ctx.if_match is not None and ctx.if_match != version:
                raise VersionMismatch(aggregate_id, ctx.if_match, version)
            if check is not None:
                await check(state)
            events = aggregate.decide(state, command)
            if not events:
                return Outcome(version, [])
            new_state = state
            for event in events:
                new_state = aggregate.evolve(new_state, aggregate_id, event)
            assert new_state is not None
            expected = ctx.if_match if ctx.if_match is not None else version
            try:
                result = await self._append(
                    aggregate, aggregate_id, events, new_state, expected, key, ctx
                )
            except VersionMismatch:
                if ctx.if_match is not None:
                    raise
                continue
            await self._wait_for(aggregate_id, result)
            created = state is None or bool(getattr(state, "deleted", False))
            return Outcome(result.version, result.positions, result.duplicate, created)
        raise Conflict(f"{aggregate_id!r} is changing too often; try again")

    async def _append(
        self,
        aggregate: Aggregate[S, C],
        aggregate_id: str,
        events: list[Event],
        new_state: S,
        expected: int,
        key: str,
        ctx: RequestContext,
    ) -> AppendResult:
        meta = ctx.meta()
        if self.clock is not None:
            # the injected clock, not Redis's, decides when the command took effect
            meta["effective_at"] = self.clock.now_ms()
        return await self.store.append(
            aggregate.kind,
            aggregate_id,
            events,
            meta=meta,
            expected_version=expected,
            snapshot=aggregate.snapshot(new_state),
            status=aggregate.status(new_state),
            due=aggregate.due_change(new_state, events),
            now_ms=self.clock.now_ms() if self.clock is not None else None,
            idempotency=Idempotency(
                key=key,
                fingerprint=ctx.fingerprint or key,
                ttl_ms=AUTO_KEY_TTL_MS if ctx.idempotency_key is None else self.ttl_ms,
            ),
        )

    async def _wait_for(self, aggregate_id: str, result: AppendResult) -> None:
        if result.last_position is None:
            return
        p = self.store.keys.partition_of(aggregate_id)
        await self.waiter.wait(p, result.last_position, self.wait_timeout_s)

    # -- workflows -----------------------------------------------------------

    async def put_workflow(
        self, workflow_id: str, config: wf.WorkflowConfig, ctx: RequestContext
    ) -> Outcome:
        command = wf.PutWorkflow(workflow_id, config, self.outbound)
        return await self.execute(WORKFLOWS, workflow_id, command, ctx)

    async def delete_workflow(
        self, workflow_id: str, ctx: RequestContext, users: Callable[[], Any]
    ) -> Outcome:
        async def not_in_use(_state: wf.WorkflowState | None) -> None:
            schedules = await users()
            if schedules:
                raise WorkflowInUse(workflow_id, schedules)

        return await self.execute(
            WORKFLOWS, workflow_id, wf.DeleteWorkflow(workflow_id), ctx, check=not_in_use
        )

    # -- schedules -----------------------------------------------------------

    async def check_schedule_config(self, config: sched.ScheduleConfig) -> None:
        """Checks that need other aggregates: the workflow exists and accepts the input."""
        workflow, _ = await self.load(WORKFLOWS, config.workflow_id)
        if workflow is None or workflow.deleted:
            raise InvalidInput.one(
                "workflow_id", f"workflow {bare_id(config.workflow_id)!r} does not exist"
            )
        validate_input(workflow.config, config.input)

    async def schedule(
        self, schedule_id: str, command: sched.ScheduleCommand, ctx: RequestContext
    ) -> Outcome:
        config = getattr(command, "config", None)
        if config is not None:
            await self.check_schedule_config(config)
        return await self.execute(SCHEDULES, schedule_id, command, ctx)


def validate_input(workflow: wf.WorkflowConfig, value: Any, field_name: str = "input") -> None:
    """Check a run input against the workflow's JSON Schema; InvalidInput names the field."""
    if workflow.input_schema is None:
        return
    validator = jsonschema.Draft202012Validator(workflow.input_schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        raise InvalidInput(
            [
                FieldError(".".join([field_name, *map(str, e.absolute_path)]), e.message)
                for e in errors[:20]
            ]
        )


def ensure_workflow(state: wf.WorkflowState | None, workflow_id: str) -> wf.WorkflowState:
    if state is None or state.deleted:
        raise WorkflowNotFound(workflow_id)
    return state
