"""Applying files: load what the write model holds, plan, append the plan's events.

Apply talks to Redis, as ``serve`` does, and writes through the same append script as
every command (``store/append.lua``: the version check, the write model, the due index
and an idempotency record in one step), with the events the domain decides
(``ApplySchedule``, ``PutWorkflow``, ``DeleteSchedule``, ``DeleteWorkflow``). It does
not go through the HTTP API: that would cost a request and a wait for the views per
resource, where apply reads every snapshot in a few pipelined round trips and sends
its appends in batches.

Each append expects the version the plan was made against; its idempotency key is
derived from the resource, that version and the events, so an append that redis-py
sends twice, or two processes applying the same files at once, append once. An
append refused because the resource changed meanwhile is decided again against the
new state through ``CommandService`` (the API's retry loop).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from service.commands import (
    AUTO_KEY_TTL_MS,
    CommandService,
    ProjectionWaiter,
    RequestContext,
)
from service.domain import schedule as sched
from service.domain import workflow as wf
from service.domain.namespaces import DEFAULT
from service.errors import CronstreamError, NotFound
from service.manifests.files import Manifest, load_sources, read_sources
from service.manifests.plan import Action, Change, Current, Options, Plan, make_plan
from service.store.boundary import translate_redis_errors
from service.store.eventstore import (
    AppendResult,
    EventStore,
    Idempotency,
    PendingAppend,
)
from service.store.namespaces import NamespaceQuotas
from service.store.secrets import SigningSecrets

ACTOR = "apply"
VALIDATED_TTL_S = 7 * 86_400


@dataclass(frozen=True)
class Applied:
    """What one change did: its append (version, positions), or why it failed."""

    change: Change
    version: int = 0
    positions: tuple[str, ...] = ()
    duplicate: bool = False
    error: str | None = None


@dataclass
class Report:
    plan: Plan
    applied: list[Applied] = field(default_factory=list)

    @property
    def failed(self) -> list[Applied]:
        return [a for a in self.applied if a.error is not None]

    @property
    def appended(self) -> int:
        """How many events this apply added to the log."""
        return sum(len(a.positions) for a in self.applied if not a.duplicate)

    def counts(self) -> dict[str, Counter[str]]:
        """Per file: what was done (``failed`` counts the changes that were not)."""
        out = self.plan.counts()
        for item in self.failed:
            counts = out[item.change.source]
            counts[item.change.action.value] -= 1
            counts["failed"] += 1
        return out


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile. An apply builds tens of thousands of
    small objects that all live until it ends; the collector's passes over them
    (none of them cyclic garbage) took more than half of a no-op apply's time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def load_current(store: EventStore, manifest: Manifest, *, everything: bool) -> Current:
    """The snapshots of the resources the files name (and of the workflows their
    schedules use); of every resource when ``everything`` (for --prune)."""
    if everything:
        workflow_ids = sorted(await store.aggregate_ids(wf.KIND))
        schedule_ids = sorted(await store.aggregate_ids(sched.KIND))
    else:
        workflow_ids = sorted(
            {d.id for d in manifest.workflows} | {d.data["workflow_id"] for d in manifest.schedules}
        )
        schedule_ids = [d.id for d in manifest.schedules]
    workflows = await store.load_many(wf.KIND, workflow_ids)
    schedules = await store.load_many(sched.KIND, schedule_ids)
    return Current(
        dict(zip(workflow_ids, workflows, strict=True)),
        dict(zip(schedule_ids, schedules, strict=True)),
        complete=everything,
    )


async def plan(store: EventStore, manifest: Manifest, options: Options) -> Plan:
    """What applying ``manifest`` would change now (InvalidFiles when it cannot)."""
    quota = await NamespaceQuotas(store.redis, store.keys).get(DEFAULT)
    options = replace(options, quota=quota, now_ms=int(time.time() * 1000))
    everything = options.prune or quota.max_schedules is not None
    current = await load_current(store, manifest, everything=everything)
    return make_plan(manifest, current, options)


async def apply(store: EventStore, planned: Plan, options: Options, actor: str = ACTOR) -> Report:
    """Append the plan's events: workflows, then schedules, then the schedules and
    workflows pruned; each resource's append alone is atomic."""
    report = Report(planned)
    meta = RequestContext(actor=actor).meta()
    stages: dict[int, list[Change]] = {}
    for change in planned.writes:
        stages.setdefault(_stage(change), []).append(change)
    for stage in sorted(stages):
        changes = stages[stage]
        results = await store.append_many([_pending(c, meta) for c in changes])
        for change, result in zip(changes, results, strict=True):
            if isinstance(result, AppendResult):
                report.applied.append(_applied(change, result))
            else:
                report.applied.append(await _again(store, change, options, actor))
    await _forget_secrets(store, report)
    return report


async def _forget_secrets(store: EventStore, report: Report) -> None:
    """A pruned workflow's stored signing secrets go with it, as with the API's delete:
    one defined again under its id starts with none."""
    secrets = SigningSecrets(store.redis, store.keys)
    for item in report.applied:
        change = item.change
        if change.kind == wf.KIND and change.action is Action.DELETE and item.error is None:
            await secrets.forget(change.id)


async def apply_paths(
    store: EventStore,
    paths: Iterable[Path | str],
    options: Options,
    *,
    dry_run: bool = False,
    actor: str = ACTOR,
) -> Report:
    """Read, validate and plan every file under ``paths``, then apply the plan (unless
    ``dry_run``). Nothing is written when any file is invalid (InvalidFiles)."""
    with collections_paused():
        manifest = await read_manifest(store, paths)
        planned = await plan(store, manifest, options)
        if dry_run:
            return Report(planned)
        return await apply(store, planned, options, actor)


@translate_redis_errors
async def read_manifest(store: EventStore, paths: Iterable[Path | str]) -> Manifest:
    """``load_files``, except that a file validated before (the same bytes, by the same
    code) is read from what that validation left in Redis rather than parsed again:
    parsing YAML is most of an apply's time, and most applies change few files. Redis
    keeps one entry per file name (the last content validated), for a week."""
    sources, whole_dirs = read_sources(paths)
    names = [_cache_key(store, source.name) for source in sources]
    blobs: list[Any] = await store.redis.mget(names) if names else []
    known = {}
    for source, blob in zip(sources, blobs, strict=True):
        digest, _, validated = (blob or b"").partition(b"\n")
        if digest.decode() == source.digest:
            known[source.digest] = validated
    manifest, fresh = load_sources(sources, whole_dirs, known)
    if fresh:
        async with store.redis.pipeline(transaction=False) as pipe:
            for source in sources:
                if source.digest in fresh:
                    entry = source.digest.encode() + b"\n" + fresh[source.digest]
                    pipe.set(_cache_key(store, source.name), entry, ex=VALIDATED_TTL_S)
            await pipe.execute()
    return manifest


def _cache_key(store: EventStore, name: str) -> str:
    return store.keys.validated_file(hashlib.sha256(name.encode()).hexdigest()[:32])


def _stage(change: Change) -> int:
    deleting = change.action is Action.DELETE
    if change.kind == wf.KIND:
        return 3 if deleting else 0
    return 2 if deleting else 1


def _pending(change: Change, meta: dict[str, Any]) -> PendingAppend:
    aggregate = change.aggregate
    state = change.state
    for event in change.events:
        state = aggregate.evolve(state, change.id, event)
    snapshot = aggregate.snapshot(state)
    key = _idempotency_key(change, snapshot)
    return PendingAppend(
        kind=change.kind,
        aggregate_id=change.id,
        events=list(change.events),
        meta=meta,
        expected_version=change.version,
        snapshot=snapshot,
        idempotency=Idempotency(key, key, AUTO_KEY_TTL_MS),
        status=aggregate.status(state),
        due=aggregate.due_change(state, list(change.events)),
    )


def _idempotency_key(change: Change, snapshot: dict[str, Any]) -> str:
    """Derived from the version a change follows, its events' types and the state it
    leaves: the same change of the same state has the same key, wherever it is applied
    from."""
    types = ",".join(event.type_name() for event in change.events)
    head = f"{change.kind}\0{change.id}\0{change.version}\0{types}\0".encode()
    digest = hashlib.sha256(head + orjson.dumps(snapshot, option=orjson.OPT_SORT_KEYS))
    return "apply:" + digest.hexdigest()[:40]


def _applied(change: Change, result: AppendResult) -> Applied:
    return Applied(change, result.version, tuple(result.positions), result.duplicate)


async def _again(store: EventStore, change: Change, options: Options, actor: str) -> Applied:
    """A change whose resource changed since the plan, decided again on its new state."""
    commands = CommandService(
        store,
        ProjectionWaiter(store.redis, store.keys),
        wait_timeout_s=0,
        outbound=options.outbound,
    )
    try:
        outcome = await commands.execute(
            change.aggregate, change.id, change.command, RequestContext(actor=actor)
        )
    except NotFound:
        return Applied(change)  # pruned meanwhile by someone else: nothing left to do
    except CronstreamError as exc:
        return Applied(change, error=str(exc))
    return Applied(change, outcome.version, tuple(outcome.positions), outcome.duplicate)
