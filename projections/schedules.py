"""The schedules view: one record per schedule plus the indexes that list them.

Records: ``schedule:<id>`` (JSON). Indexes (sorted sets, score 0, ordered by id):
``schedules``, ``schedules:workflow:<wid>``, ``schedules:status:<status>``,
``schedules:tag:<tag>``, and ``schedules:namespaced`` (the schedules of namespaces other
than ``default``, whose ids are ``NS/ID``: so counting ``default``'s, or finding which
namespaces hold any, never walks every id). A deleted schedule keeps a tombstone record (so its
version keeps counting) and leaves every index.
"""

from __future__ import annotations

from typing import Any

from projections.batch import Record, ViewBatch
from service.domain import namespaces
from service.domain.policies import ScheduleStatus
from service.domain.runs import FINAL_EVENTS, RunStatus
from service.store.eventstore import StoredEvent, parse_position

COMMAND_EVENTS = frozenset(
    {
        "ScheduleCreated",
        "ScheduleUpdated",
        "SchedulePaused",
        "ScheduleResumed",
        "ScheduleDeleted",
        "ScheduleCompleted",
    }
)
FIRE_EVENTS = frozenset({"ScheduleFired", "FireSkipped", "FireDropped", "FiresMissed"})
RUN_CLOSED = {event.type_name(): status for event, status in FINAL_EVENTS.items()}
RUN_EVENTS = frozenset({"RunQueued", "RunStarted", *RUN_CLOSED})
INFO_EVENTS = FIRE_EVENTS | RUN_EVENTS
EVENTS = COMMAND_EVENTS | INFO_EVENTS
"""Every event this view applies (``apply`` ignores the others)."""
RECENT_ACTIONS = 10
NAMESPACED = "schedules:namespaced"


def record_name(schedule_id: str) -> str:
    return f"schedule:{schedule_id}"


def index_names(record: Record) -> list[str]:
    """Every index a live schedule record belongs to."""
    names = [
        "schedules",
        f"schedules:workflow:{record['workflow_id']}",
        f"schedules:status:{record['status']}",
    ]
    names += [f"schedules:tag:{tag}" for tag in record.get("tags", [])]
    if namespaces.namespace_of(record["id"]) != namespaces.DEFAULT:
        names.append(NAMESPACED)
    return names


def _config_fields(schedule: dict[str, Any]) -> dict[str, Any]:
    return {
        key: schedule.get(key)
        for key in (
            "name",
            "description",
            "workflow_id",
            "spec",
            "policy",
            "input",
            "max_actions",
            "tags",
        )
    }


def reads(event: StoredEvent) -> list[str]:
    """The records ``apply`` reads for ``event`` (the projector fetches a batch's at once)."""
    if event.type in EVENTS:
        return [record_name(event.sid)]
    return []


async def apply(batch: ViewBatch, event: StoredEvent) -> None:
    if event.type in INFO_EVENTS:
        await _apply_info(batch, event)
        return
    if event.type not in COMMAND_EVENTS:
        return
    name = record_name(event.sid)
    old = await batch.get(name)
    if old is not None and parse_position(old["position"]) >= parse_position(event.position):
        return  # already applied
    new = _next_record(old, event)
    if new is None:
        return
    _follow_file(new, event)
    before = set(index_names(old)) if old is not None and not old["deleted"] else set()
    after = set(index_names(new)) if not new["deleted"] else set()
    for index in before - after:
        batch.index(index, event.sid, present=False)
    for index in after - before:
        batch.index(index, event.sid, present=True)
    batch.put(name, new)


def _next_record(old: Record | None, event: StoredEvent) -> Record | None:
    data = event.data
    if event.type == "ScheduleCreated":
        status = ScheduleStatus.PAUSED if data.get("paused") else ScheduleStatus.ACTIVE
        return {
            "id": event.sid,
            **_config_fields(data["schedule"]),
            "status": str(status),
            "note": data.get("note", ""),
            "version": (old["version"] if old else 0) + 1,
            "created_at": event.at,
            "updated_at": event.at,
            "deleted": False,
            "position": event.position,
            "info": (old or {}).get("info") or new_info(),
        }
    if old is None:
        return None
    new = {**old, "version": old["version"] + 1, "updated_at": event.at, "position": event.position}
    if event.type == "ScheduleUpdated":
        new.update(_config_fields(data["schedule"]))
    elif event.type == "SchedulePaused":
        new.update(status=str(ScheduleStatus.PAUSED), note=data.get("note", ""))
    elif event.type == "ScheduleResumed":
        new.update(status=str(ScheduleStatus.ACTIVE), note=data.get("note", ""))
    elif event.type == "ScheduleDeleted":
        new.update(deleted=True, note=data.get("note", ""))
    elif event.type == "ScheduleCompleted":
        new.update(status=str(ScheduleStatus.COMPLETED))
    return new


def _follow_file(record: Record, event: StoredEvent) -> None:
    """Keep what the file of a schedule that apply keeps declared, and how the schedule
    differs from it (``divergence``, field -> file and live values; ``override``), as
    the domain's ``divergence`` does on the write model."""
    data = event.data
    if event.type == "SchedulePaused":
        record["paused_by_failure"] = data.get("cause") == "run_failed"
    elif event.type == "ScheduleResumed":
        record["paused_by_failure"] = False
    managed = data.get("managed")
    if managed is not None and event.type != "ScheduleDeleted":
        declared = record.get("declared") or {}
        if event.type in ("ScheduleCreated", "ScheduleUpdated"):
            paused = record["status"] == "paused" and not record.get("paused_by_failure")
            declared = {**_config_fields(data["schedule"]), "paused": paused}
        elif event.type in ("SchedulePaused", "ScheduleResumed"):
            declared = {**declared, "paused": event.type == "SchedulePaused"}
        record.update(managed=managed, declared=declared)
    record["divergence"] = _divergence(record)


def _divergence(record: Record) -> dict[str, dict[str, Any]]:
    declared = record.get("declared")
    if not record.get("managed") or not declared or record["deleted"]:
        return {}
    live = _config_fields(record)
    out = {
        key: {"file": declared.get(key), "live": live.get(key)}
        for key in sorted(live)
        if declared.get(key) != live.get(key)
    }
    if record["status"] != "completed" and not record.get("paused_by_failure"):
        paused = record["status"] == "paused"
        if paused != declared.get("paused"):
            out["paused"] = {"file": declared.get("paused"), "live": paused}
    return out


def new_info() -> dict[str, Any]:
    return {
        "action_count": 0,
        "missed_catchup_count": 0,
        "overlap_skipped_count": 0,
        "buffer_dropped_count": 0,
        "running_runs": [],
        "recent_actions": [],
        "last_run_at": None,
        "last_run_status": None,
    }


async def _apply_info(batch: ViewBatch, event: StoredEvent) -> None:
    """Fires and runs change a schedule's counters, not its version."""
    name = record_name(event.sid)
    record = await batch.get(name)
    if record is None or parse_position(record["position"]) >= parse_position(event.position):
        return
    info = record.get("info") or new_info()
    data = event.data
    recent: list[dict[str, Any]] = info["recent_actions"]
    if event.type == "ScheduleFired":
        if data.get("trigger") == "schedule":
            info["action_count"] += 1
        recent.append(
            {
                "nominal_time": data["nominal_time"],
                "fire_time": data["fire_time"],
                "run_id": data["run_id"],
                "trigger": data["trigger"],
                "outcome": "buffered" if data.get("held") else "fired",
            }
        )
    elif event.type == "FireSkipped":
        info["overlap_skipped_count"] += 1
        recent.append({"nominal_time": data["nominal_time"], "outcome": "skipped"})
    elif event.type == "FireDropped":
        info["buffer_dropped_count"] += 1
        recent.append({"nominal_time": data["nominal_time"], "outcome": "dropped"})
    elif event.type == "FiresMissed":
        info["missed_catchup_count"] += data["count"]
    elif event.type == "RunQueued":
        info["running_runs"] = [*info["running_runs"], data["run_id"]]
        info["last_run_at"] = event.at
        info["last_run_status"] = RunStatus.QUEUED.value
    elif event.type == "RunStarted":
        info["last_run_status"] = RunStatus.RUNNING.value
    elif event.type in RUN_CLOSED:
        info["running_runs"] = [r for r in info["running_runs"] if r != data["run_id"]]
        info["last_run_status"] = RUN_CLOSED[event.type].value
    info["recent_actions"] = recent[-RECENT_ACTIONS:]
    record.update(info=info, position=event.position)  # ``get`` gave a copy of its own
    batch.put(name, record)
