"""A schedule's audit trail: every event in order with who, what changed, trigger, outcome.

Built from the log (and archives) alone. "What changed" is a field-level diff
computed by replaying the schedule's commands: each ``ScheduleUpdated`` is
compared with the configuration in force before it, giving
``{"spec.cron": {"from": [...], "to": [...]}}``; status changes (pause, resume,
complete, delete) show as ``status``/``deleted`` changes. Fires and runs get a
short ``outcome``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from service.audit.replay import event_time, read_log
from service.domain.runs import (
    FINAL_EVENTS,
    RunAttemptFailed,
    RunCancelled,
    RunDeadLettered,
    RunEvent,
    RunFailed,
    RunQueued,
    RunStarted,
    RunStatus,
    RunTimedOut,
    parse_event,
)
from service.domain.timeutil import to_rfc3339
from service.store.eventstore import StoredEvent
from service.store.keys import Keyspace

Changes = dict[str, dict[str, Any]]
FINISHED = {
    RunStatus.SUCCEEDED: "succeeded",
    RunStatus.FAILED: "failed",
    RunStatus.TIMED_OUT: "timed out",
    RunStatus.DEAD_LETTERED: "dead-lettered",
    RunStatus.CANCELLED: "cancelled",
}
PRIOR_PAGE = 1000  # events read per call when folding what came before a history page

# events whose item needs the schedule's state before them
STATEFUL = frozenset(
    {
        "ScheduleCreated",
        "ScheduleUpdated",
        "SchedulePaused",
        "ScheduleResumed",
        "ScheduleCompleted",
        "ScheduleDeleted",
    }
)


def diff(old: Any, new: Any, path: str = "") -> Changes:
    """Field-level differences between two JSON values, keyed by dotted path.

    Objects are compared key by key; anything else (lists included: a cron list is
    one setting) is compared whole.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out: Changes = {}
        for key in sorted(set(old) | set(new), key=str):
            out.update(diff(old.get(key), new.get(key), f"{path}.{key}" if path else str(key)))
        return out
    if old == new:
        return {}
    return {path or "$": {"from": old, "to": new}}


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """A JSON value's leaves (non-objects, and empty objects) by dotted path."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key in sorted(value, key=str):
            out.update(leaves(value[key], f"{path}.{key}" if path else str(key)))
        return out
    return {path or "$": value}


def outcome(event: StoredEvent) -> str | None:
    """A short outcome of a fire or run event (None for other events)."""
    run_event = parse_event(event.type, event.data)
    if run_event is not None:
        return run_outcome(run_event)
    data = event.data
    match event.type:
        case "ScheduleFired":
            held = " (held: an earlier run is still running)" if data.get("held") else ""
            return f"fired {data.get('nominal_time') or 'now'} as run {data.get('run_id')}{held}"
        case "FireSkipped":
            return f"skipped {data.get('nominal_time')}: {data.get('reason', '')}".rstrip(": ")
        case "FireDropped":
            return f"dropped {data.get('nominal_time')}: {data.get('reason', '')}".rstrip(": ")
        case "FiresMissed":
            return f"missed {data.get('count')} ({data.get('first')} .. {data.get('last')})"
    return None


def run_outcome(event: RunEvent) -> str | None:
    """A short outcome of a run event (None for a cancel asked or a revive)."""
    run = f"run {event.run_id}"
    match event:
        case RunQueued():
            return f"{run} queued"
        case RunStarted():
            return f"{run} started (attempt {event.attempt})"
        case RunAttemptFailed():
            return f"{run} attempt {event.attempt} failed: {event.error or ''}"
        case RunCancelled() | RunDeadLettered():
            why = event.reason
        case RunFailed() | RunTimedOut():
            why = event.error or ""
        case _:
            why = ""
    status = FINAL_EVENTS.get(type(event))
    if status is None:
        return None
    return f"{run} {FINISHED[status]}" + (f": {why}" if why else "")


def trigger(event: StoredEvent) -> str | None:
    """What set a fire or run going: schedule, manual, api or backfill."""
    raw = event.data.get("trigger")
    if isinstance(raw, dict):
        raw = raw.get("type")
    if isinstance(raw, str):
        return raw
    cause = event.data.get("cause")  # SchedulePaused v2: manual or run_failed
    return cause if isinstance(cause, str) else None


@dataclass
class Trail:
    """Folds a schedule's events in order and describes each one."""

    config: dict[str, Any] | None = None
    status: str | None = None
    deleted: bool = False
    items: list[dict[str, Any]] = field(default_factory=list)

    def changes(self, event: StoredEvent) -> Changes | None:
        """What ``event`` changes relative to the state before it (and fold it in)."""
        data = event.data
        before_status, before_deleted = self.status, self.deleted
        out: Changes | None = None
        match event.type:
            case "ScheduleCreated":
                previous = self.config if self.deleted else None
                self.config = data.get("schedule") or {}
                self.status = "paused" if data.get("paused") else "active"
                self.deleted = False
                if previous is not None:  # created again after a delete
                    out = diff(previous, self.config)
                else:
                    out = {k: {"from": None, "to": v} for k, v in leaves(self.config).items()}
            case "ScheduleUpdated":
                new = data.get("schedule") or {}
                out = diff(self.config or {}, new)
                self.config = new
            case "SchedulePaused":
                self.status = "paused"
            case "ScheduleResumed":
                self.status = "active"
            case "ScheduleCompleted":
                self.status = "completed"
            case "ScheduleDeleted":
                self.deleted = True
            case _:
                return None
        out = dict(out or {})
        if self.status != before_status:
            out["status"] = {"from": before_status, "to": self.status}
        if self.deleted != before_deleted:
            out["deleted"] = {"from": before_deleted, "to": self.deleted}
        return out

    def describe(self, event: StoredEvent) -> dict[str, Any]:
        return {
            "position": event.position,
            "type": event.type,
            "v": event.v,
            "at": to_rfc3339(event.at),
            "effective_at": to_rfc3339(event_time(event)),
            "actor": event.meta.get("actor"),
            "trigger": trigger(event),
            "changes": self.changes(event),
            "outcome": outcome(event),
            "data": event.data,
            "meta": event.meta,
        }


def annotate(prior: Iterable[StoredEvent], page: Iterable[StoredEvent]) -> list[dict[str, Any]]:
    """History items for ``page``, given every event of the schedule before it."""
    trail = Trail()
    for event in prior:
        trail.changes(event)
    return [trail.describe(event) for event in page]


async def audit(
    redis: Redis,
    keys: Keyspace,
    schedule_id: str,
    *,
    start: int | None = None,
    end: int | None = None,
    archive_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Every event of a schedule whose time is in [start, end], described, in log order.

    Reads the schedule's partition (archives first, then the live log); changes are
    computed against everything before, including events before ``start``.
    """
    trail = Trail()
    out = []
    events: AsyncIterator[StoredEvent] = read_log(
        redis, keys, keys.partition_of(schedule_id), archive_dir
    )
    async for event in events:
        if event.sid != schedule_id:
            continue
        moment = event_time(event)
        item = trail.describe(event)
        if (start is None or moment >= start) and (end is None or moment <= end):
            out.append(item)
    return out
