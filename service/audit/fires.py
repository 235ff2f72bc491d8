""" "Why didn't 02:00 run?": the outcome of every nominal time, from the log alone.

The schedule's events give the spec and status in force over time (segments),
the recorded fire outcomes (fired, held, skipped, dropped, missed), what became of
held runs (released, cancelled, still waiting) and, with the spec, the excluded
times. Every nominal time in a range gets exactly one outcome, and every outcome
but ``fired``, ``backfilled`` and ``scheduled`` says why in ``detail.reason``
(``overlap with run R``, ``buffer full``, ``catch-up policy latest``, ``outside
catch-up window``, ``held in buffer``...). A backfill's attempt at a time is in
``detail.backfill``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from service.domain.fire import Missed, why_missed
from service.domain.policies import CatchupPolicy
from service.domain.spec import Spec, preview
from service.domain.timeutil import parse_instant
from service.domain.types import Instant
from service.store.eventstore import StoredEvent

RUN_CLOSED = frozenset(
    {"RunSucceeded", "RunFailed", "RunTimedOut", "RunCancelled", "RunDeadLettered"}
)


class FireOutcome(BaseModel):
    nominal_time: Instant
    # fired|pending|cancelled|skipped|dropped|missed|excluded|paused|completed|superseded|
    # scheduled|backfilled
    outcome: str
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
class _Fire:
    """A fire that got a run: queued at once, or held until something ends."""

    trigger: str
    detail: dict[str, Any]


@dataclass
class _Recorded:
    """What the log says happened to nominal times and to the runs fires made."""

    fires: dict[int, _Fire] = field(default_factory=dict)  # scheduled fires with a run
    refused: dict[int, FireOutcome] = field(default_factory=dict)  # skipped or dropped
    backfills: dict[int, _Fire | FireOutcome] = field(default_factory=dict)
    missed: list[Missed] = field(default_factory=list)
    queued: set[str] = field(default_factory=set)  # runs queued (held ones once released)
    closed: set[str] = field(default_factory=set)
    cancelled: dict[str, str] = field(default_factory=dict)  # run id -> why


def _kind(fire_id: str) -> str:
    """``schedule``, ``backfill``, or the kind of a trigger (``manual``, ``api``)."""
    parts = fire_id.split(":")
    return parts[-1] if parts[-1] in ("schedule", "backfill") else "trigger"


def _fired(found: _Recorded, data: dict[str, Any]) -> None:
    nominal = parse_instant(data["nominal_time"])
    detail = {"run_id": data["run_id"], "fire_time": data["fire_time"]}
    detail["held"] = data.get("held", False)
    if data.get("after"):
        detail["after"] = data["after"]
    fire = _Fire(data["trigger"], detail)
    if data["trigger"] == "schedule":
        found.fires[nominal] = fire
    elif data["trigger"] == "backfill":
        found.backfills[nominal] = fire


def _refused(found: _Recorded, event: StoredEvent) -> None:
    data = event.data
    nominal = parse_instant(data["nominal_time"])
    if event.type == "FireSkipped":
        running = ", ".join(data.get("running") or [])
        reason = f"overlap with run {running}" if running else "overlap"
        outcome = FireOutcome(nominal_time=nominal, outcome="skipped", detail={"reason": reason})
    else:
        reason = "buffer full" if data["reason"] == "buffer_full" else str(data["reason"])
        outcome = FireOutcome(nominal_time=nominal, outcome="dropped", detail={"reason": reason})
    kind = _kind(str(data.get("fire_id", "")))
    if kind == "schedule":
        found.refused[nominal] = outcome
    elif kind == "backfill" and not isinstance(found.backfills.get(nominal), _Fire):
        found.backfills[nominal] = outcome  # a time that got a run keeps it


def _missed(data: dict[str, Any]) -> Missed:
    window, policy = data.get("window_start"), data.get("policy")
    return Missed(
        int(data["count"]),
        parse_instant(data["first"]),
        parse_instant(data["last"]),
        CatchupPolicy(policy) if policy else None,
        parse_instant(window) if window else None,
        data.get("catchup_max"),
    )


def _recorded(events: list[StoredEvent]) -> _Recorded:
    found = _Recorded()
    for event in events:
        data = event.data
        if event.type == "ScheduleFired":
            _fired(found, data)
        elif event.type in ("FireSkipped", "FireDropped"):
            _refused(found, event)
        elif event.type == "FiresMissed":
            found.missed.append(_missed(data))
        elif event.type == "RunQueued":
            found.queued.add(data["run_id"])
        elif event.type in RUN_CLOSED:
            found.closed.add(data["run_id"])
            if event.type == "RunCancelled":
                found.cancelled[data["run_id"]] = str(data.get("reason") or "cancelled")
    return found


def _run_outcome(fire: _Fire, found: _Recorded) -> tuple[str, dict[str, Any]]:
    """A fire's outcome by what became of its run: ``fired`` once it was queued,
    ``cancelled`` if it never was, else ``pending`` (and what it waits for)."""
    detail = dict(fire.detail)
    run_id = detail["run_id"]
    if not detail["held"] or run_id in found.queued:
        return "fired", detail
    if run_id in found.cancelled:
        detail["reason"] = f"cancelled before it ran: {found.cancelled[run_id]}"
        return "cancelled", detail
    after = detail.get("after")
    if after and after not in found.closed:
        of = "backfill" if fire.trigger == "backfill" else "catch-up"
        detail["reason"] = f"held until run {after} ends (the previous time of its {of})"
    else:
        detail["reason"] = "held in buffer"
    return "pending", detail


def _backfill_detail(nominal: int, found: _Recorded) -> dict[str, Any] | None:
    """A backfill's attempt at a time: its run and that run's outcome, or why it got none."""
    attempt = found.backfills.get(nominal)
    if attempt is None:
        return None
    if isinstance(attempt, FireOutcome):
        return {"outcome": attempt.outcome, **attempt.detail}
    outcome, detail = _run_outcome(attempt, found)
    return {"outcome": outcome, **detail}


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
        out[nominal] = _outcome(nominal, segment, found, now)
        backfill = _backfill_detail(nominal, found)
        if backfill is not None:
            out[nominal].detail["backfill"] = backfill
    return truncated


def _outside(nominal: int, found: _Recorded) -> FireOutcome:
    """A time outside the spec segments: what a backfill (or a recorded fire) did with it."""
    backfill = _backfill_detail(nominal, found)
    if backfill is None:
        return _recorded_outcome(nominal, found) or FireOutcome(
            nominal_time=nominal, outcome="superseded"
        )
    word = backfill["outcome"]
    detail: dict[str, Any] = {"backfill": backfill}
    if "reason" in backfill:
        detail["reason"] = backfill["reason"]
    return FireOutcome(
        nominal_time=nominal, outcome="backfilled" if word == "fired" else word, detail=detail
    )


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
    recorded = {*found.fires, *found.refused, *found.backfills}
    for nominal in sorted(recorded):
        if start <= nominal <= end and nominal not in out:
            out[nominal] = _outside(nominal, found)
    ordered = sorted(out.values(), key=lambda o: o.nominal_time)
    if len(ordered) > bound:
        ordered, truncated = ordered[:bound], True
    return ordered, truncated


def _recorded_outcome(nominal: int, found: _Recorded) -> FireOutcome | None:
    fire = found.fires.get(nominal)
    if fire is not None:
        outcome, detail = _run_outcome(fire, found)
        return FireOutcome(nominal_time=nominal, outcome=outcome, detail=detail)
    refused = found.refused.get(nominal)
    return refused.model_copy(deep=True) if refused is not None else None


def _outcome(nominal: int, segment: Segment, found: _Recorded, now: int) -> FireOutcome:
    recorded = _recorded_outcome(nominal, found)
    if recorded is not None:
        return recorded
    for missed in found.missed:
        if missed.first <= nominal <= missed.last:
            reason = why_missed(missed, nominal)
            return FireOutcome(nominal_time=nominal, outcome="missed", detail={"reason": reason})
    if segment.status == "paused":
        return FireOutcome(
            nominal_time=nominal, outcome="paused", detail={"reason": "the schedule was paused"}
        )
    if segment.status == "completed":
        reason = "the schedule had completed its max_actions"
        return FireOutcome(nominal_time=nominal, outcome="completed", detail={"reason": reason})
    if nominal > now:
        return FireOutcome(nominal_time=nominal, outcome="scheduled")
    if segment.end is not None:
        return FireOutcome(
            nominal_time=nominal,
            outcome="superseded",
            detail={"reason": "the schedule changed before this time fired"},
        )
    return FireOutcome(
        nominal_time=nominal, outcome="pending", detail={"reason": "due, not decided yet"}
    )
