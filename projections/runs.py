"""The runs view: one record per run, with its attempts, and indexes to list them.

Records: ``run:<id>`` (JSON). Indexes (sorted sets, score 0, members
``<queued ms, 13 digits>:<run id>`` so that reverse lexicographic order is newest
first): ``runs``, ``runs:schedule:<sid>``, ``runs:workflow:<wid>``,
``runs:status:<status>``, ``runs:trigger:<type>``.
"""

from __future__ import annotations

from typing import Any

from projections.batch import Record, ViewBatch
from service.store.eventstore import StoredEvent, parse_position

EVENTS = frozenset(
    {
        "RunQueued",
        "RunStarted",
        "RunAttemptFailed",
        "RunSucceeded",
        "RunFailed",
        "RunTimedOut",
        "RunCancelled",
        "RunDeadLettered",
        "RunCancelRequested",
        "RunRequeued",
    }
)
FINAL = {
    "RunSucceeded": "succeeded",
    "RunFailed": "failed",
    "RunTimedOut": "timedout",
    "RunCancelled": "cancelled",
    "RunDeadLettered": "deadlettered",
}
MAX_ATTEMPTS_KEPT = 100


def record_name(run_id: str) -> str:
    return f"run:{run_id}"


def member(record: Record) -> str:
    return f"{record['queued_at']:013d}:{record['id']}"


def index_names(record: Record) -> list[str]:
    names = [
        "runs",
        f"runs:status:{record['status']}",
        f"runs:trigger:{record['trigger']['type']}",
        f"runs:workflow:{record['workflow_id']}",
    ]
    if record.get("schedule_id"):
        names.append(f"runs:schedule:{record['schedule_id']}")
    return names


async def apply(batch: ViewBatch, event: StoredEvent) -> None:
    if event.type not in EVENTS:
        return
    run_id = event.data.get("run_id")
    if not isinstance(run_id, str):
        return
    name = record_name(run_id)
    old = await batch.get(name)
    if old is not None and parse_position(old["position"]) >= parse_position(event.position):
        return
    if event.type == "RunQueued":
        new = _queued(old, event)
    elif old is None:
        return  # a run whose queueing predates this view (cannot happen when built from the log)
    else:
        new = _next(old, event)
    before = set(index_names(old)) if old is not None else set()
    after = set(index_names(new))
    key = member(new)
    for index in before - after:
        batch.index(index, key, present=False)
    for index in after - before:
        batch.index(index, key, present=True)
    batch.put(name, new)


def _queued(old: Record | None, event: StoredEvent) -> Record:
    data = event.data
    if old is not None:  # released from a buffer, or requeued: keep its history
        return {**old, "status": "queued", "position": event.position}
    return {
        "id": data["run_id"],
        "schedule_id": data.get("schedule_id"),
        "workflow_id": data["workflow_id"],
        "trigger": data["trigger"],
        "nominal_time": data.get("nominal_time"),
        "input": data.get("input"),
        "status": "queued",
        "queued_at": event.at,
        "started_at": None,
        "finished_at": None,
        "attempts": [],
        "cancel_requested": False,
        "position": event.position,
    }


def _next(old: Record, event: StoredEvent) -> Record:
    data: dict[str, Any] = event.data
    new = {**old, "position": event.position}
    attempts: list[dict[str, Any]] = [dict(a) for a in old["attempts"]]
    if event.type == "RunStarted":
        attempts.append(
            {
                "attempt": data["attempt"],
                "worker": data.get("worker"),
                "started_at": event.at,
                "finished_at": None,
                "outcome": "running",
                "error": None,
                "status": None,
                "body_excerpt": None,
            }
        )
        new.update(status="running", started_at=old["started_at"] or event.at)
    elif event.type == "RunAttemptFailed":
        _close_attempt(attempts, data, "failed", event.at)
        new["status"] = "retrying" if data.get("retry_at") else old["status"]
        if data.get("retry_at"):
            attempts[-1]["retry_at"] = data["retry_at"]
    elif event.type in FINAL:
        if event.type == "RunSucceeded" and data.get("attempt"):
            _close_attempt(attempts, data, "succeeded", event.at)
        new.update(status=FINAL[event.type], finished_at=event.at)
        if event.type == "RunDeadLettered":
            new["dead_letter_reason"] = data.get("reason")
        if event.type == "RunCancelled" and attempts and attempts[-1]["outcome"] == "running":
            attempts[-1].update(outcome="cancelled", finished_at=event.at)
    elif event.type == "RunCancelRequested":
        new["cancel_requested"] = True
    elif event.type == "RunRequeued":
        new.update(status="queued", finished_at=None)
    new["attempts"] = attempts[-MAX_ATTEMPTS_KEPT:]
    return new


def _close_attempt(
    attempts: list[dict[str, Any]], data: dict[str, Any], outcome: str, at: int
) -> None:
    if not attempts or attempts[-1]["attempt"] != data.get("attempt"):
        attempts.append({"attempt": data.get("attempt"), "worker": None, "started_at": None})
    attempts[-1].update(
        outcome=outcome,
        finished_at=at,
        error=data.get("error"),
        status=data.get("status"),
        body_excerpt=data.get("body_excerpt"),
    )
