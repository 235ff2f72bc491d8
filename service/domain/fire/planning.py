"""Which nominal times of a schedule fire now, and which are missed.

The catch-up policy, the on-time grace, ``max_actions`` and jitter decide it. The
caller passes the spec, the policy, the high-water mark (every nominal time at or
before it already has an outcome) and the time; the fire script then enforces the
plan atomically (lease, version, high-water mark).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.domain.policies import CatchupPolicy
from service.domain.schedule import SchedulePolicy
from service.domain.spec import Spec, iter_fire_times, jittered_time

ON_TIME_GRACE_MS = 15_000
"""A nominal time at most this late is on time (a ticker failover takes up to the lease
TTL); anything later is handled by the catch-up policy."""

PLAN_BOUND = 100_000
"""At most this many due times are planned in one step; the rest in the next."""


@dataclass(frozen=True)
class Missed:
    """The due times the catch-up policy does not run: how many, the first and the last,
    and what decided it (the policy, where its window began, its ``catchup_max``), so
    the log tells why each of them did not run."""

    count: int
    first: int
    last: int
    policy: CatchupPolicy | None = None
    window_start: int | None = None
    catchup_max: int | None = None


def why_missed(missed: Missed, nominal: int) -> str:
    """Why a time recorded as missed did not run, in a few words."""
    if missed.window_start is not None and nominal < missed.window_start:
        return "outside catch-up window"
    match missed.policy:
        case CatchupPolicy.ALL:
            return f"catch-up policy all: more than catchup_max ({missed.catchup_max}) due"
        case None:
            return "catch-up policy after downtime"  # recorded before the policy was
        case policy:
            return f"catch-up policy {policy}"


@dataclass(slots=True)
class FirePlan:
    """The outcome of every nominal time in (hwm, new_hwm]: fired, or counted in ``missed``."""

    fire: list[int] = field(default_factory=list)
    fire_at: list[int] = field(default_factory=list)  # the actual (jittered) time of each
    missed: Missed | None = None
    new_hwm: int = 0
    next_due: int | None = None  # when to look again (the next actual time); None: never
    completes: bool = False  # the last action allowed by max_actions is among ``fire``


def due_at(spec: Spec, schedule_id: str, nominal: int | None) -> int | None:
    """The actual time of a nominal time: jittered by a delay that keeps it strictly
    before the next nominal time (None stays None: the spec has no more times)."""
    if nominal is None:
        return None
    if spec.jitter <= 0:
        return nominal
    following = next(iter_fire_times(spec, nominal), None)
    return jittered_time(spec, schedule_id, nominal, following)


def plan(
    spec: Spec,
    policy: SchedulePolicy,
    schedule_id: str,
    hwm: int,
    now_ms: int,
    remaining: int | None = None,
    grace_ms: int = ON_TIME_GRACE_MS,
) -> FirePlan:
    """Plan the nominal times in (hwm, now] whose actual (jittered) time has come;
    ``remaining`` bounds the scheduled actions left before the schedule completes.
    """
    due, actual, next_nominal = _due(spec, schedule_id, hwm, now_ms)
    if not due:
        return FirePlan(new_hwm=hwm, next_due=due_at(spec, schedule_id, next_nominal))
    fire = _select(due, policy, now_ms, grace_ms)
    completes = remaining is not None and len(fire) >= remaining
    if completes and fire:
        # the schedule completes with its last action: later times are left undecided,
        # for the next step in case the overlap policy does not run that action
        fire = fire[:remaining]
        later = [t for t in due if t > fire[-1]]
        next_nominal = later[0] if later else next_nominal
        due = due[: len(due) - len(later)]
    missed = None
    if len(fire) < len(due):
        chosen = set(fire)
        not_run = [t for t in due if t not in chosen]
        missed = Missed(
            len(not_run),
            not_run[0],
            not_run[-1],
            policy.catchup,
            now_ms - policy.catchup_window,
            policy.catchup_max,
        )
    return FirePlan(
        fire,
        [actual.get(t, t) for t in fire] if actual else fire,
        missed,
        due[-1],
        due_at(spec, schedule_id, next_nominal),
        completes,
    )


def _due(
    spec: Spec, schedule_id: str, hwm: int, now_ms: int
) -> tuple[list[int], dict[int, int], int | None]:
    """The nominal times after ``hwm`` whose actual time is at or before now (at most
    PLAN_BOUND), their actual times when jittered, and the next nominal time after them."""
    due: list[int] = []
    actual: dict[int, int] = {}
    for nominal in iter_fire_times(spec, hwm):
        if nominal > now_ms or len(due) >= PLAN_BOUND:
            return due, actual, nominal
        if spec.jitter > 0:
            at = due_at(spec, schedule_id, nominal) or nominal
            if at > now_ms:
                return due, actual, nominal
            actual[nominal] = at
        due.append(nominal)
    return due, actual, None


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
