""" "Why didn't 02:00 run?": the outcome of every nominal time, from the log alone.

The schedule's events give the spec and status in force over time (segments),
the recorded fire outcomes (fired, skipped, dropped, missed) and, with the spec,
the excluded times. Every nominal time in a range gets exactly one outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from service.domain.spec import Spec, preview
from service.domain.timeutil import parse_instant
from service.domain.types import Instant
from service.store.eventstore import StoredEvent


class FireOutcome(BaseModel):
    nominal_time: Instant
    outcome: str  # fired|skipped|dropped|missed|excluded|paused|completed|superseded|...
    detail: dict[str, Any] = {}


@dataclass
class Segment:
    start: int
    end: int | None
    spec: dict[str, Any]
    status: str


def segments(events: list[StoredEvent]) -> list[Segment]:
    """The spec and status in force between the schedule's commands."""
    out: list[Segment] = []
    spec: dict[str, Any] | None = None
    status = ""

    def close(at: int) -> None:
        if out and out[-1].end is None:
            out[-1].end = at

    for event in events:
        data = event.data
        at = int(event.meta.get("effective_at", event.at))
        if event.type == "ScheduleCreated":
            spec, status = data["schedule"]["spec"], "paused" if data.get("paused") else "active"
        elif event.type == "ScheduleUpdated":
            spec = data["schedule"]["spec"]
        elif event.type == "SchedulePaused":
            status = "paused"
        elif event.type == "ScheduleResumed":
            status = "active"
        elif event.type == "ScheduleCompleted":
            status = "completed"
        elif event.type == "ScheduleDeleted":
            close(at)
            spec = None
            continue
        else:
            continue
        close(at)
        if spec is not None:
            out.append(Segment(at, None, spec, status))
    return out


def fire_outcomes(
    events: list[StoredEvent], start: int, end: int, now: int, bound: int
) -> tuple[list[FireOutcome], bool]:
    recorded: dict[int, FireOutcome] = {}
    backfilled: dict[int, dict[str, Any]] = {}
    missed: list[tuple[int, int]] = []
    for event in events:
        data = event.data
        if event.type == "ScheduleFired":
            nominal = parse_instant(data["nominal_time"])
            detail = {
                "run_id": data["run_id"],
                "fire_time": data["fire_time"],
                "held": data.get("held", False),
            }
            if data["trigger"] == "schedule":
                recorded[nominal] = FireOutcome(
                    nominal_time=nominal, outcome="fired", detail=detail
                )
            elif data["trigger"] == "backfill":
                backfilled[nominal] = detail
        elif event.type in ("FireSkipped", "FireDropped"):
            nominal = parse_instant(data["nominal_time"])
            outcome = "skipped" if event.type == "FireSkipped" else "dropped"
            recorded[nominal] = FireOutcome(
                nominal_time=nominal, outcome=outcome, detail={"reason": data["reason"]}
            )
        elif event.type == "FiresMissed":
            missed.append((parse_instant(data["first"]), parse_instant(data["last"])))

    out: dict[int, FireOutcome] = {}
    truncated = False
    for segment in segments(events):
        low = max(start, segment.start)
        high = end if segment.end is None else min(end, segment.end)
        if low > high:
            continue
        result = preview(Spec.model_validate(segment.spec), low - 1, bound)
        if len(result.times) >= bound and result.times[-1].nominal <= high:
            truncated = True
        for excluded in result.excluded:
            if excluded.nominal <= high:
                out.setdefault(
                    excluded.nominal,
                    FireOutcome(
                        nominal_time=excluded.nominal,
                        outcome="excluded",
                        detail={"reason": excluded.reason},
                    ),
                )
        for time in result.times:
            nominal = time.nominal
            if nominal > high:
                break
            out[nominal] = _outcome(nominal, segment, recorded, missed, now)
            if nominal in backfilled:
                out[nominal].detail["backfill"] = backfilled[nominal]
    for nominal, recorded_outcome in recorded.items():
        if start <= nominal <= end and nominal not in out:
            out[nominal] = recorded_outcome  # e.g. a skipped backfill before the schedule began
    for nominal, detail in backfilled.items():
        if start <= nominal <= end and nominal not in out:
            out[nominal] = FireOutcome(
                nominal_time=nominal, outcome="backfilled", detail={"backfill": detail}
            )
    ordered = sorted(out.values(), key=lambda o: o.nominal_time)
    if len(ordered) > bound:
        ordered, truncated = ordered[:bound], True
    return ordered, truncated


def _outcome(
    nominal: int,
    segment: Segment,
    recorded: dict[int, FireOutcome],
    missed: list[tuple[int, int]],
    now: int,
) -> FireOutcome:
    if nominal in recorded:
        return recorded[nominal].model_copy(deep=True)
    if any(first <= nominal <= last for first, last in missed):
        return FireOutcome(
            nominal_time=nominal,
            outcome="missed",
            detail={"reason": "catch-up policy after downtime"},
        )
    if segment.status in ("paused", "completed"):
        return FireOutcome(nominal_time=nominal, outcome=segment.status)
    if nominal > now:
        return FireOutcome(nominal_time=nominal, outcome="scheduled")
    if segment.end is not None:
        return FireOutcome(
            nominal_time=nominal,
            outcome="superseded",
            detail={"reason": "the schedule changed before this time fired"},
        )
    return FireOutcome(nominal_time=nominal, outcome="pending")
