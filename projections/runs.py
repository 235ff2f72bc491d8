"""The runs view: one record per run, with its attempts, and indexes to list them.

Records: ``run:<id>`` (JSON). Indexes (sorted sets, score 0, members
``<queued ms, 13 digits>:<run id>`` so that reverse lexicographic order is newest
first): ``runs``, ``runs:schedule:<sid>``, ``runs:workflow:<wid>``,
``runs:status:<status>``, ``runs:trigger:<type>``.
"""

from __future__ import annotations

from typing import Any

from projections.batch import Record, ViewBatch
from service.domain.runs import (
    FINAL_EVENTS,
    RUN_EVENTS,
    Run,
    RunAttemptFailed,
    RunCancelRequested,
    RunDeadLettered,
    RunEvent,
    RunQueued,
    RunRequeued,
    RunStarted,
    RunStatus,
    RunSucceeded,
    evolve,
    parse_event,
)
from service.store.eventstore import StoredEvent, parse_position

EVENTS = frozenset(RUN_EVENTS)
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


def reads(event: StoredEvent) -> list[str]:
    """The records ``apply`` reads for ``event``."""
    run_id = event.data.get("run_id") if event.type in EVENTS else None
    return [record_name(run_id)] if isinstance(run_id, str) else []


async def apply(batch: ViewBatch, event: StoredEvent) -> None:
    typed = parse_event(event.type, event.data)
    if typed is None:
        return
    name = record_name(typed.run_id)
    old = await batch.get(name)
    if old is not None and parse_position(old["position"]) >= parse_position(event.position):
        return
    if isinstance(typed, RunQueued):
        new = _queued(old, event)
    elif old is None:
        return  # a run whose queueing predates this view (cannot happen when built from the log)
    else:
        new = _next(old, event, typed)
    before = set(index_names(old)) if old is not None else set()
    after = set(index_names(new))
    key = member(new)
    for index in before - after:
        batch.index(index, key, present=False)
    for index in after - before:
        batch.index(index, key, present=True)
    batch.put(name, new)


def _queued(old: Record | None, event: StoredEvent) -> Record:
    # the record keeps the logged values as written (the trigger's keys in their order)
    data = event.data
    if old is not None:  # released from a buffer, or requeued: keep its history
        return {**old, "status": RunStatus.QUEUED.value, "position": event.position}
    return {
        "id": data["run_id"],
        "schedule_id": data.get("schedule_id"),
        "workflow_id": data["workflow_id"],
        "trigger": data["trigger"],
        "nominal_time": data.get("nominal_time"),
        "input": data.get("input"),
        "status": RunStatus.QUEUED.value,
        "queued_at": event.at,
        "started_at": None,
        "finished_at": None,
        "attempts": [],
        "cancel_requested": False,
        "position": event.position,
    }


def _next(old: Record, event: StoredEvent, typed: RunEvent) -> Record:
    data: dict[str, Any] = event.data
    run = evolve(Run(RunStatus(old["status"])), typed)
    assert run is not None
    new = {**old, "position": event.position, "status": run.status.value}
    attempts: list[dict[str, Any]] = [dict(a) for a in old["attempts"]]
    match typed:
        case RunStarted():
            attempts.append(
                {
                    "attempt": typed.attempt,
                    "worker": typed.worker,
                    "started_at": event.at,
                    "finished_at": None,
                    "outcome": "running",
                    "error": None,
                    "status": None,
                    "body_excerpt": None,
                }
            )
            new["started_at"] = old["started_at"] or event.at
        case RunAttemptFailed():
            _close_attempt(attempts, data, "failed", event.at)
            if typed.retry_at is not None:
                attempts[-1]["retry_at"] = data["retry_at"]
        case RunCancelRequested():
            new["cancel_requested"] = True
        case RunRequeued():
            new["finished_at"] = None
        case _ if type(typed) in FINAL_EVENTS:
            _finish(new, attempts, data, typed, event.at)
    new["attempts"] = attempts[-MAX_ATTEMPTS_KEPT:]
    return new


def _finish(
    new: Record, attempts: list[dict[str, Any]], data: dict[str, Any], typed: RunEvent, at: int
) -> None:
    if isinstance(typed, RunSucceeded) and typed.attempt:
        _close_attempt(attempts, data, "succeeded", at)
    new["finished_at"] = at
    if isinstance(typed, RunDeadLettered):
        new["dead_letter_reason"] = data.get("reason")
    if new["status"] == RunStatus.CANCELLED and attempts and attempts[-1]["outcome"] == "running":
        attempts[-1].update(outcome="cancelled", finished_at=at)


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
