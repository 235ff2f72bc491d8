"""The schedules view: one record per schedule plus the indexes that list them.

Records: ``schedule:<id>`` (JSON). Indexes (sorted sets, score 0, ordered by id):
``schedules``, ``schedules:workflow:<wid>``, ``schedules:status:<status>``,
``schedules:tag:<tag>``. A deleted schedule keeps a tombstone record (so its
version keeps counting) and leaves every index.
"""

from __future__ import annotations

from typing import Any

from projections.batch import Record, ViewBatch
from service.domain.policies import ScheduleStatus
from service.store.eventstore import StoredEvent, parse_position

COMMAND_EVENTS = frozenset(
    {"ScheduleCreated", "ScheduleUpdated", "SchedulePaused", "ScheduleResumed", "ScheduleDeleted"}
)


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


async def apply(batch: ViewBatch, event: StoredEvent) -> None:
    if event.type not in COMMAND_EVENTS:
        return
    name = record_name(event.sid)
    old = await batch.get(name)
    if old is not None and parse_position(old["position"]) >= parse_position(event.position):
        return  # already applied
    new = _next_record(old, event)
    if new is None:
        return
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
    return new
