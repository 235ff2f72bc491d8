"""Fire planning: which nominal times of a schedule fire now, and which are missed.

Pure: the caller passes the spec, the policy, the high-water mark (every nominal
time at or before it already has an outcome) and the time. The ticker's script
then enforces the plan atomically (lease, version, high-water mark) and applies
the overlap policy, which depends on runs only Redis sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from service.domain.events import Event, register
from service.domain.policies import CatchupPolicy
from service.domain.schedule import SchedulePolicy
from service.domain.spec import Spec, iter_fire_times, jittered_time
from service.domain.types import Instant

ON_TIME_GRACE_MS = 15_000
"""A nominal time at most this late is on time (a ticker failover takes up to the lease
TTL); anything later is handled by the catch-up policy."""

PLAN_BOUND = 100_000
"""At most this many due times are planned in one step; the rest in the next."""


@dataclass(frozen=True)
class Missed:
    count: int
    first: int
    last: int


@dataclass(frozen=True)
class FirePlan:
    """The outcome of every nominal time in (hwm, new_hwm]."""

    fire: list[int] = field(default_factory=list)
    missed: Missed | None = None
    new_hwm: int = 0
    next_nominal: int | None = None
    completes: bool = False

    @property
    def changes_anything(self) -> bool:
        return bool(self.fire or self.missed or self.completes)


def fire_id(schedule_id: str, nominal_ms: int, kind: str = "schedule") -> str:
    """Deterministic id of a fire: (schedule id, nominal time, kind)."""
    return f"{schedule_id}:{nominal_ms}:{kind}"


def plan(
    spec: Spec,
    policy: SchedulePolicy,
    hwm: int,
    now_ms: int,
    remaining: int | None = None,
    grace_ms: int = ON_TIME_GRACE_MS,
    actual: Callable[[int], int] | None = None,
) -> FirePlan:
    """Plan the nominal times in (hwm, now] whose actual (jittered) time has come;
    ``remaining`` bounds the scheduled actions left before the schedule completes.
    """
    due: list[int] = []
    next_nominal: int | None = None
    for nominal in iter_fire_times(spec, hwm):
        late_enough = nominal <= now_ms and (actual is None or actual(nominal) <= now_ms)
        if not late_enough or len(due) >= PLAN_BOUND:
            next_nominal = nominal
            break
        due.append(nominal)
    if not due:
        return FirePlan(new_hwm=hwm, next_nominal=next_nominal)
    fire = _select(due, policy, now_ms, grace_ms)
    completes = False
    if remaining is not None and len(fire) >= remaining:
        fire = fire[:remaining]
        completes = True
    chosen = set(fire)
    not_run = [t for t in due if t not in chosen]
    if completes:
        # times after the last action belong to a completed schedule, not to catch-up
        not_run = [t for t in not_run if t < fire[-1]] if fire else not_run
    missed = Missed(len(not_run), not_run[0], not_run[-1]) if not_run else None
    return FirePlan(
        fire=fire,
        missed=missed,
        new_hwm=due[-1],
        next_nominal=None if completes else next_nominal,
        completes=completes,
    )


def _select(due: list[int], policy: SchedulePolicy, now_ms: int, grace_ms: int) -> list[int]:
    """The due times the catch-up policy runs (in order)."""
    if len(due) == 1 and now_ms - due[0] <= grace_ms:
        return due  # the ordinary case: one time, on time
    window_start = now_ms - policy.catchup_window
    in_window = [t for t in due if t >= window_start]
    if not in_window:
        return []
    match policy.catchup:
        case CatchupPolicy.LATEST:
            return [in_window[-1]]
        case CatchupPolicy.OLDEST:
            return [in_window[0]]
        case CatchupPolicy.ALL:
            return in_window[-policy.catchup_max :]
        case CatchupPolicy.NONE:
            latest = in_window[-1]
            return [latest] if now_ms - latest <= grace_ms else []
    raise ValueError(f"unknown catch-up policy {policy.catchup!r}")


def due_at(spec: Spec, schedule_id: str, nominal: int | None) -> int | None:
    """When the ticker should look at a schedule again: its next actual (jittered) time."""
    if nominal is None:
        return None
    if spec.jitter <= 0:
        return nominal
    following = next(iter_fire_times(spec, nominal), None)
    return jittered_time(spec, schedule_id, nominal, following)


# -- events written by the fire script (Lua) ---------------------------------------------
# (the runs a fire queues, and the cancels its overlap policy asks: service.domain.runs)


@register
class ScheduleFired(Event):
    aggregate = "schedule"
    fire_id: str
    nominal_time: Instant
    fire_time: Instant
    epoch: int
    trigger: str
    run_id: str
    held: bool = False


@register
class FireSkipped(Event):
    aggregate = "schedule"
    fire_id: str
    nominal_time: Instant
    reason: str
    running: list[str]


@register
class FireDropped(Event):
    aggregate = "schedule"
    fire_id: str
    nominal_time: Instant
    reason: str


@register
class FiresMissed(Event):
    aggregate = "schedule"
    count: int
    first: Instant
    last: Instant
    reason: str


@register
class ScheduleCompleted(Event):
    aggregate = "schedule"
    action_count: int
