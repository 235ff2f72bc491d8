"""Turn view records and stored events into the API's JSON shapes."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from projections.schedules import new_info
from service.domain.namespaces import split
from service.domain.spec import Spec, describe, remaining_times
from service.domain.timeutil import to_rfc3339
from service.store.eventstore import StoredEvent

NEXT_RUN_COUNT = 5


@lru_cache(maxsize=4096)
def _spec(canonical: bytes) -> Spec:
    return Spec.model_validate(orjson.loads(canonical))


def spec_of(data: dict[str, Any]) -> Spec:
    return _spec(orjson.dumps(data, option=orjson.OPT_SORT_KEYS))


def schedule(record: dict[str, Any], now_ms: int) -> dict[str, Any]:
    spec = spec_of(record["spec"])
    active = record["status"] == "active"
    info = record.get("info") or new_info()
    remaining = record["max_actions"]
    if remaining is not None:
        remaining = max(remaining - info["action_count"], 0)
    times = remaining_times(spec, now_ms, NEXT_RUN_COUNT, remaining) if active else []
    rendered = [to_rfc3339(t) for t in times]
    return {
        "id": split(record["id"])[1],
        "name": record["name"],
        "description": record["description"],
        "workflow_id": split(record["workflow_id"])[1],
        "spec": {**record["spec"], "description": describe(spec)},
        "policy": record["policy"],
        "input": record["input"],
        "max_actions": record["max_actions"],
        "tags": record["tags"],
        "status": record["status"],
        "paused": record["status"] == "paused",
        "note": record["note"],
        "version": record["version"],
        "created_at": to_rfc3339(record["created_at"]),
        "updated_at": to_rfc3339(record["updated_at"]),
        "next_run_at": rendered[0] if rendered else None,
        "next_run_times": rendered,
        "last_run_at": to_rfc3339(info["last_run_at"]) if info["last_run_at"] else None,
        "last_run_status": info["last_run_status"],
        "info": {
            "action_count": info["action_count"],
            "missed_catchup_count": info["missed_catchup_count"],
            "overlap_skipped_count": info["overlap_skipped_count"],
            "buffer_dropped_count": info["buffer_dropped_count"],
            "running_runs": info["running_runs"],
            "recent_actions": info["recent_actions"],
            "remaining_actions": remaining,
        },
        **_file_fields(record),
    }


def _file_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Which file keeps a schedule and how the schedule differs from it."""
    managed = record.get("managed") or {}
    divergence = record.get("divergence") or {}
    return {
        "managed_by": managed.get("by"),
        "source": managed.get("source"),
        "override": bool(divergence),
        "divergence": divergence,
    }


def workflow(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": split(record["id"])[1],
        "name": record["name"],
        "description": record["description"],
        "target": record["target"],
        "input_schema": record["input_schema"],
        "retry": record["retry"],
        "timeout": record["timeout"],
        "version": record["version"],
        "created_at": to_rfc3339(record["created_at"]),
        "updated_at": to_rfc3339(record["updated_at"]),
    }


def feed_event(position: str, event: StoredEvent) -> dict[str, Any]:
    return {
        "position": position,
        "partition": event.partition,
        "type": event.type,
        "v": event.v,
        "sid": split(event.sid)[1],
        "data": event.data,
        "meta": event.meta,
        "at": to_rfc3339(event.at),
    }


def history_item(event: StoredEvent) -> dict[str, Any]:
    return {
        "position": event.position,
        "type": event.type,
        "v": event.v,
        "at": to_rfc3339(event.at),
        "actor": event.meta.get("actor"),
        "data": event.data,
        "meta": event.meta,
    }
