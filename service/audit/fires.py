""" "Why didn't 02:00 run?": the outcome of every nominal time, from the log alone.

The schedule's events give the spec and status in force over time (segments),
the recorded fire outcomes (fired, skipped, dropped, missed) and, with the spec,
the excluded times. Every nominal time in a range gets exactly one outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class _Recorded:
    """What the log says happened to nominal times: fired, skipped, dropped, backfilled,
    and the ranges recorded as missed."""

    outcomes: dict[int, FireOutcome] = field(default_factory=dict)
    backfilled: dict[int, dict[str, Any]] = field(default_factory=dict)
    missed: list[tuple[int, int]] = field(default_factory=list)


def _recorded(events: list[StoredEvent]) -> _Recorded:
    found = _Recorded()
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
                found.outcomes[nominal] = FireOutcome(
                    nominal_time=nominal, outcome="fired", detail=detail
                )
            elif data["trigger"] == "backfill":
                found.backfilled[nominal] = detail
        elif event.type in ("FireSkipped", "FireDropped"):
            nominal = parse_instant(data["nominal_time"])
            outcome = "skipped" if event.type == "FireSkipped" else "dropped"
            found.outcomes[nominal] = FireOutcome(
                nominal_time=nominal, outcome=outcome, detail={"reason": data["reason"]}
            )
        elif event.type == "FiresMissed":
            found.missed.append((parse_instant(data["first"]), parse_instant(data["last"])))
    return found


def _in_segment(
    segment: Segment,
    low: int,
    high: int,
    found: _Recorded,
    now: int,
    bound: int,
    out: dict[int, FireOutcome],
) -> bool:
    """The outcome of every nominal time of one spec segment in [low, high]; True when
    the segment held more times than ``bound``."""
    result = preview(Spec.model_validate(segment.spec), low - 1, bound)
    truncated = len(result.times) >= bound and result.times[-1].nominal <= high
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
        out[nominal] = _outcome(nominal, segment, found.outcomes, found.missed, now)
        if nominal in found.backfilled:
            out[nominal].detail["backfill"] = found.backfilled[nominal]
    return truncated


def fire_outcomes(
    events: list[StoredEvent], start: int, end: int, now: int, bound: int
) -> tuple[list[FireOutcome], bool]:
    found = _recorded(events)
    out: dict[int, FireOutcome] = {}
    truncated = False
    for segment in segments(events):
        low = max(start, segment.start)
        high = end if segment.end is None else min(end, segment.end)
        if low <= high:
            truncated = _in_segment(segment, low, high, found, now, bound, out) or truncated
    for nominal, recorded_outcome in found.outcomes.items():
        if start <= nominal <= end and nominal not in out:
            out[nominal] = recorded_outcome  # e.g. a skipped backfill before the schedule began
    for nominal, detail in found.backfilled.items():
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
