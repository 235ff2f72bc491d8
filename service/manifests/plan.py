"""A plan: what applying files changes, resource by resource, field by field.

Pure: it takes what the files declare and the write-model snapshots loaded for them,
asks the domain (``decide``) which events each resource needs, and says why. Nothing
here reads Redis; ``reconcile`` loads the snapshots and appends the plan's events.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from service.commands import SCHEDULES, WORKFLOWS, Aggregate, validate_input
from service.domain import schedule as sched
from service.domain import workflow as wf
from service.domain.addresses import PUBLIC_ONLY, OutboundPolicy
from service.domain.events import Event
from service.domain.managed import APPLY, Managed
from service.domain.namespaces import DEFAULT, SEPARATOR, Quota, over_quota
from service.errors import FieldError, InvalidInput
from service.manifests.files import FileError, InvalidFiles, Manifest, ScheduleDecl, WorkflowDecl

NO_QUOTA = Quota(None, None, None)
Snapshot = tuple[dict[str, Any] | None, int]
"""A write-model snapshot (None: never existed) and its version."""


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    KEEP = "keep"  # an override left as it is (--keep-overrides)


SYMBOLS = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-", Action.KEEP: "!"}


@dataclass(frozen=True)
class FieldDiff:
    """One field that changes: its dotted path, the live value, the file's value."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Change:
    """What apply does to one resource, the events that do it and the state they follow."""

    action: Action
    kind: str
    id: str
    source: str
    diffs: tuple[FieldDiff, ...] = ()
    reason: str = ""
    command: Any = None
    events: tuple[Event, ...] = ()
    state: Any = None
    version: int = 0

    @property
    def aggregate(self) -> Aggregate[Any, Any]:
        return WORKFLOWS if self.kind == wf.KIND else SCHEDULES


@dataclass
class Current:
    """The write model's snapshots that a plan is made against, by id."""

    workflows: dict[str, Snapshot] = field(default_factory=dict)
    schedules: dict[str, Snapshot] = field(default_factory=dict)
    complete: bool = False  # every resource was loaded (as --prune needs)


@dataclass(frozen=True)
class Options:
    prune: bool = False
    keep_overrides: bool = False
    outbound: OutboundPolicy = PUBLIC_ONLY
    quota: Quota = NO_QUOTA  # the default namespace's, which files declare into
    now_ms: int = 0  # when the plan is made (a quota's fire gaps are counted from it)


@dataclass
class Plan:
    changes: list[Change]
    unchanged: Counter[str]
    sources: list[str]

    def counts(self) -> dict[str, Counter[str]]:
        """Per file: how many resources each action touches, and how many stay."""
        out: dict[str, Counter[str]] = {source: Counter() for source in self.sources}
        for change in self.changes:
            out.setdefault(change.source, Counter())[change.action.value] += 1
        for source, count in self.unchanged.items():
            out.setdefault(source, Counter())["unchanged"] += count
        return out

    @property
    def writes(self) -> list[Change]:
        return [c for c in self.changes if c.action is not Action.KEEP]


def make_plan(manifest: Manifest, current: Current, options: Options) -> Plan:
    """Compare the files with ``current``; InvalidFiles when a declaration cannot be
    applied (an unknown workflow, an input its workflow refuses, a refused target)."""
    plan = Plan([], Counter(), list(manifest.sources))
    errors: list[FileError] = []
    targets = {d.id: d.data for d in manifest.workflows}
    for decl in manifest.workflows:
        try:
            _workflow(plan, decl, current, options)
        except InvalidInput as exc:
            errors += _located(decl, exc)
    for item in manifest.schedules:
        try:
            _schedule(plan, item, current, targets, options)
        except InvalidInput as exc:
            errors += _located(item, exc)
    if errors:
        raise InvalidFiles(errors)
    if options.prune:
        if not current.complete:
            raise ValueError("pruning needs every resource loaded")
        plan.changes += _prunes(manifest, current, errors)
    errors += _schedules_full(plan, current, options.quota)
    if errors:
        raise InvalidFiles(errors)
    return plan


def _schedules_full(plan: Plan, current: Current, quota: Quota) -> list[FileError]:
    """The namespace's maximum of schedules, counted after the plan's creates and deletes."""
    if quota.max_schedules is None:
        return []
    if not current.complete:
        raise ValueError("a maximum of schedules needs every resource loaded")
    live = sum(
        1
        for sid, (snapshot, _) in current.schedules.items()
        if snapshot is not None and not snapshot.get("deleted") and SEPARATOR not in sid
    )
    for change in plan.writes:
        if change.kind == sched.KIND and change.action in (Action.CREATE, Action.DELETE):
            live += 1 if change.action is Action.CREATE else -1
    creates = [c for c in plan.writes if c.kind == sched.KIND and c.action is Action.CREATE]
    if not creates or live <= quota.max_schedules:
        return []
    message = f"namespace {DEFAULT} allows {quota.max_schedules}; this apply would leave {live}"
    return [FileError(creates[0].source, 1, 1, "schedules", message)]


def _located(decl: WorkflowDecl | ScheduleDecl, exc: InvalidInput) -> list[FileError]:
    return [FileError(decl.source, decl.line, 1, e.field, e.message) for e in exc.errors]


def _workflow(plan: Plan, decl: WorkflowDecl, current: Current, options: Options) -> None:
    managed = Managed(source=decl.source)
    snapshot, version = current.workflows.get(decl.id, (None, 0))
    desired = decl.data
    if _same_workflow(snapshot, desired, managed):
        wf.check_target(decl.config, options.outbound)
        plan.unchanged[decl.source] += 1
        return
    state = WORKFLOWS.restore(decl.id, snapshot) if snapshot is not None else None
    command = wf.PutWorkflow(decl.id, decl.config, options.outbound, managed)
    events = tuple(wf.decide(state, command))
    if not events:
        plan.unchanged[decl.source] += 1
        return
    live = state is not None and not state.deleted
    before = state.config.model_dump(mode="json") if live and state is not None else {}
    diffs: tuple[FieldDiff, ...] = ()
    if live and state is not None:
        diffs = field_diffs(before, desired) + _managed_diff(state.managed, managed)
    action = Action.UPDATE if live else Action.CREATE
    plan.changes.append(
        Change(action, wf.KIND, decl.id, decl.source, diffs, "", command, events, state, version)
    )


def _same_workflow(snapshot: dict[str, Any] | None, desired: Any, managed: Managed) -> bool:
    """The snapshot already is the file's workflow (a quick check before any model)."""
    return (
        snapshot is not None
        and not snapshot.get("deleted")
        and snapshot.get("config") == desired
        and snapshot.get("managed") == managed.model_dump(mode="json")
    )


def _schedule(
    plan: Plan,
    decl: ScheduleDecl,
    current: Current,
    targets: dict[str, dict[str, Any]],
    options: Options,
) -> None:
    _check_workflow(decl, current, targets)
    managed = Managed(source=decl.source)
    snapshot, version = current.schedules.get(decl.id, (None, 0))
    desired = decl.data
    if same_schedule(snapshot, desired, decl.paused, managed):
        plan.unchanged[decl.source] += 1
        return
    state = SCHEDULES.restore(decl.id, snapshot) if snapshot is not None else None
    live = state is not None and state.live
    if live and options.keep_overrides and sched.divergence(state):
        diverged = sched.divergence(state)
        diffs = tuple(FieldDiff(k, live_v, file_v) for k, (file_v, live_v) in diverged.items())
        reason = "override kept (--keep-overrides): the file's changes wait"
        plan.changes.append(
            Change(Action.KEEP, sched.KIND, decl.id, decl.source, diffs, reason, state=state)
        )
        return
    command = sched.ApplySchedule(decl.id, decl.config, decl.paused, managed, decl.note)
    events = tuple(sched.decide(state, command))
    if not events:
        plan.unchanged[decl.source] += 1
        return
    refused = over_quota(DEFAULT, options.quota, decl.config, options.now_ms)
    if refused:
        raise InvalidInput([FieldError(field, message) for field, message in refused])
    plan.changes.append(_schedule_change(decl, state, command, events, version))


def _schedule_change(
    decl: ScheduleDecl,
    state: sched.ScheduleState | None,
    command: sched.ApplySchedule,
    events: tuple[Event, ...],
    version: int,
) -> Change:
    if state is None or not state.live:
        return Change(
            Action.CREATE, sched.KIND, decl.id, decl.source, (), "", command, events, state, version
        )
    desired = decl.data
    diffs = field_diffs(state.config.model_dump(mode="json"), desired)
    if any(isinstance(e, sched.SchedulePaused | sched.ScheduleResumed) for e in events):
        diffs += (FieldDiff("paused", not decl.paused, decl.paused),)
    diffs += _managed_diff(state.managed, command.managed)
    reason = "reverts an override" if sched.divergence(state) else ""
    return Change(
        Action.UPDATE,
        sched.KIND,
        decl.id,
        decl.source,
        diffs,
        reason,
        command,
        events,
        state,
        version,
    )


def same_schedule(
    snapshot: dict[str, Any] | None, desired: Any, paused: bool, managed: Managed
) -> bool:
    """The snapshot already is the file's schedule: what ``decide_apply`` finds nothing
    to do for, checked on the snapshot's JSON before any model is built."""
    if snapshot is None or snapshot.get("deleted"):
        return False
    if snapshot.get("config") != desired or snapshot.get("declared") != desired:
        return False
    if snapshot.get("managed") != managed.model_dump(mode="json"):
        return False
    status, failed = snapshot.get("status"), bool(snapshot.get("paused_by_failure"))
    if paused and status == "active":
        return False
    if not paused and status == "paused" and not failed:
        return False
    return failed or paused == bool(snapshot.get("declared_paused"))


def _check_workflow(
    decl: ScheduleDecl, current: Current, targets: dict[str, dict[str, Any]]
) -> None:
    """The schedule's workflow exists (in the files, or already) and accepts its input."""
    workflow_id = decl.data["workflow_id"]
    workflow = targets.get(workflow_id)
    if workflow is None:
        snapshot, _ = current.workflows.get(workflow_id, (None, 0))
        if snapshot is None or snapshot.get("deleted"):
            raise InvalidInput.one("workflow_id", f"workflow {workflow_id!r} does not exist")
        workflow = targets[workflow_id] = snapshot["config"]
    if workflow.get("input_schema") is not None:
        validate_input(wf.WorkflowConfig.model_validate(workflow), decl.data.get("input"))


def _managed_diff(before: Managed | None, after: Managed) -> tuple[FieldDiff, ...]:
    if before == after:
        return ()
    return (FieldDiff("managed", _managed_text(before), _managed_text(after)),)


def _managed_text(managed: Managed | None) -> str | None:
    return None if managed is None else f"{managed.by}:{managed.source}"


def _prunes(manifest: Manifest, current: Current, errors: list[FileError]) -> list[Change]:
    """Deletes of the resources the files kept and no longer declare: schedules first,
    then workflows (a workflow a remaining schedule uses is an error)."""
    sources = set(manifest.sources)
    declared = {
        wf.KIND: {d.id for d in manifest.workflows},
        sched.KIND: {d.id for d in manifest.schedules},
    }
    changes: list[Change] = []
    for kind, snapshots in ((sched.KIND, current.schedules), (wf.KIND, current.workflows)):
        for ident, (snapshot, version) in sorted(snapshots.items()):
            source = _prunable(snapshot, manifest.whole_dirs, sources)
            if source is None or ident in declared[kind]:
                continue
            changes.append(_delete(kind, ident, source, snapshot, version))
    deleted = {c.id for c in changes if c.kind == sched.KIND}
    for change in changes:
        if change.kind == wf.KIND:
            users = _users(change.id, current, deleted)
            users += [d.id for d in manifest.schedules if d.data["workflow_id"] == change.id]
            if users:
                message = f"is used by schedules the files do not prune: {', '.join(users[:5])}"
                errors.append(FileError(change.source, 1, 1, f"workflow {change.id}", message))
    return changes


def _prunable(snapshot: dict[str, Any] | None, whole_dirs: bool, sources: set[str]) -> str | None:
    """The file a live resource is kept by, if apply may prune it."""
    if snapshot is None or snapshot.get("deleted"):
        return None
    managed = snapshot.get("managed") or {}
    if managed.get("by") != APPLY:
        return None
    source = str(managed.get("source", ""))
    return source if whole_dirs or source in sources else None


def _delete(
    kind: str, ident: str, source: str, snapshot: dict[str, Any] | None, version: int
) -> Change:
    managed = Managed(source=source)
    note = f"pruned: no longer declared in {source}"
    aggregate: Aggregate[Any, Any] = WORKFLOWS if kind == wf.KIND else SCHEDULES
    state = aggregate.restore(ident, snapshot) if snapshot is not None else None
    command: Any = (
        wf.DeleteWorkflow(ident, managed)
        if kind == wf.KIND
        else sched.DeleteSchedule(ident, note, managed)
    )
    events = tuple(aggregate.decide(state, command))
    return Change(Action.DELETE, kind, ident, source, (), note, command, events, state, version)


def _users(workflow_id: str, current: Current, deleted: set[str]) -> list[str]:
    return sorted(
        sid
        for sid, (snapshot, _) in current.schedules.items()
        if snapshot is not None
        and not snapshot.get("deleted")
        and sid not in deleted
        and snapshot.get("config", {}).get("workflow_id") == workflow_id
    )


def field_diffs(before: Any, after: Any, prefix: str = "") -> tuple[FieldDiff, ...]:
    """The leaves that differ between two JSON documents, as dotted paths (lists whole)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: tuple[FieldDiff, ...] = ()
        for key in sorted(before.keys() | after.keys()):
            path = f"{prefix}.{key}" if prefix else str(key)
            out += field_diffs(before.get(key), after.get(key), path)
        return out
    return () if before == after else (FieldDiff(prefix, before, after),)
