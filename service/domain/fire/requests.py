"""What the fire script is asked to do: one request per schedule, for the ticker's
scheduled fires, manual and API triggers, and backfills alike.

Fire ids are deterministic, (schedule id, nominal time, kind); run ids are unique per
run (two triggers in one millisecond are two runs), made by an injected function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from service.domain.fire.overlap import SKIP, OverlapRule, overlap_rule
from service.domain.fire.planning import Missed, plan
from service.domain.ids import new_id
from service.domain.policies import OverlapPolicy, ScheduleStatus
from service.domain.schedule import ScheduleConfig
from service.domain.spec import Spec, iter_fire_times
from service.errors import InvalidInput

BACKFILL_BOUND = 10_000
"""A backfill covers at most this many nominal times (split larger ranges)."""

BACKFILL_CHUNK = 500
"""Nominal times per fire script call of a backfill: each call blocks Redis briefly."""

PEOPLE = ("cli:", "ui:")
"""Actors that are people: their triggers are 'manual', any other caller's 'api'."""


class FireMode(StrEnum):
    SCHEDULE = "schedule"  # the ticker, at a nominal time
    MANUAL = "manual"  # a person asked for a run now
    API = "api"  # a program asked for a run now
    BACKFILL = "backfill"  # past nominal times, asked for explicitly


RunIds = Callable[[], str]


def new_run_id() -> str:
    return new_id("run")


def fire_id(schedule_id: str, nominal_ms: int, mode: FireMode, run_id: str = "") -> str:
    """The id of a fire: (schedule id, nominal time, kind); a trigger's kind names its
    run, since a trigger's nominal time is only the moment it was asked for."""
    if mode is FireMode.MANUAL or mode is FireMode.API:
        return f"{schedule_id}:{nominal_ms}:{mode}:{run_id}"
    return f"{schedule_id}:{nominal_ms}:{mode}"


def trigger_mode(actor: str) -> FireMode:
    return FireMode.MANUAL if actor.startswith(PEOPLE) else FireMode.API


class Fire(NamedTuple):
    nominal: int  # ms
    at: int  # the actual (jittered) time it was due, ms
    run_id: str
    fire_id: str


@dataclass(frozen=True)
class Fence:
    """The lease a scheduled fire is made under (the script refuses a stale holder)."""

    owner: str
    epoch: int


class DueSchedule(NamedTuple):
    """A due schedule as the ticker read it: the script re-checks version and mark."""

    schedule_id: str
    version: int
    status: str
    actions: int
    hwm: int


@dataclass(slots=True)
class FireRequest:
    """Everything the fire script needs to fire (or skip) one schedule's nominal times."""

    schedule_id: str
    mode: FireMode
    fire_time: int  # ms
    meta: dict[str, Any]
    workflow_id: str = ""
    target: str = "http"
    overlap: OverlapRule = SKIP
    input: Any = None
    source: str = ""
    fires: list[Fire] = field(default_factory=list)
    # a scheduled fire: its fence, the version and high-water mark it was planned on, and
    # what it moves (the mark, the due index, the missed times, the action count)
    fence: Fence | None = None
    version: int = 0
    hwm: int = 0
    new_hwm: int = 0
    next_due: int | None = None
    missed: Missed | None = None
    max_actions: int | None = None
    # a backfill's chunk after the first: the last run of the chunk before it, which
    # this chunk's first time follows if it has not ended yet
    after: str = ""
    # a trigger with an Idempotency-Key: a repeat answers the first run
    dedupe_key: str = ""
    fingerprint: str = ""
    traces: list[str] = field(default_factory=list)  # traceparent of each fire's span


def scheduled_request(
    due: DueSchedule,
    config: ScheduleConfig | None,
    target: str,
    now: int,
    fence: Fence,
    run_ids: RunIds = new_run_id,
) -> FireRequest:
    """The ticker's request for a due schedule. Without a config or when not active,
    the request plans nothing: the script drops the schedule from the due index."""
    sid = due.schedule_id
    meta = {"actor": f"ticker:{fence.owner}", "epoch": fence.epoch}
    if config is None or due.status != ScheduleStatus.ACTIVE:
        return FireRequest(
            sid, FireMode.SCHEDULE, now, meta, fence=fence, version=due.version, hwm=due.hwm
        )
    max_actions = config.max_actions
    remaining = None if max_actions is None else max(max_actions - due.actions, 0)
    policy = config.policy
    planned = plan(config.spec, policy, sid, due.hwm, now, remaining)
    return FireRequest(
        sid,
        FireMode.SCHEDULE,
        now,
        meta,
        workflow_id=config.workflow_id,
        target=target,
        overlap=overlap_rule(policy.overlap, policy.buffer_max, target),
        input=config.input,
        fires=[
            Fire(t, at, run_ids(), fire_id(sid, t, FireMode.SCHEDULE))
            for t, at in zip(planned.fire, planned.fire_at, strict=True)
        ],
        fence=fence,
        version=due.version,
        hwm=due.hwm,
        new_hwm=planned.new_hwm,
        next_due=planned.next_due,
        missed=planned.missed,
        max_actions=max_actions,
    )


def trigger_request(
    schedule_id: str,
    config: ScheduleConfig,
    target: str,
    now: int,
    actor: str,
    meta: dict[str, Any],
    run_input: Any,
    overlap: OverlapPolicy | None = None,
    dedupe_key: str = "",
    fingerprint: str = "",
    run_ids: RunIds = new_run_id,
) -> FireRequest:
    """A run now, of a schedule's workflow, under its overlap policy (or ``overlap``);
    it ignores ``max_actions`` and works while the schedule is paused."""
    mode = trigger_mode(actor)
    run_id = run_ids()
    return FireRequest(
        schedule_id=schedule_id,
        mode=mode,
        fire_time=now,
        meta=meta,
        workflow_id=config.workflow_id,
        target=target,
        overlap=overlap_rule(overlap or config.policy.overlap, config.policy.buffer_max, target),
        input=run_input,
        source=actor,
        fires=[Fire(now, now, run_id, fire_id(schedule_id, now, mode, run_id))],
        dedupe_key=dedupe_key,
        fingerprint=fingerprint,
    )


def check_backfill_range(start: int, end: int) -> None:
    if end < start:
        raise InvalidInput.one("end", "must not be before start")


def backfill_times(spec: Spec, start: int, end: int) -> list[int]:
    """The nominal times in [start, end], at most BACKFILL_BOUND."""
    check_backfill_range(start, end)
    times: list[int] = []
    for nominal in iter_fire_times(spec, start - 1):
        if nominal > end:
            break
        if len(times) >= BACKFILL_BOUND:
            raise InvalidInput.one(
                "end", f"the range holds more than {BACKFILL_BOUND} nominal times; split it"
            )
        times.append(nominal)
    return times


def backfill_requests(
    schedule_id: str,
    config: ScheduleConfig,
    target: str,
    times: list[int],
    now: int,
    actor: str,
    meta: dict[str, Any],
    overlap: OverlapPolicy | None = None,
    run_ids: RunIds = new_run_id,
) -> list[FireRequest]:
    """Requests that run each of ``times`` once ever (in chunks of BACKFILL_CHUNK), one
    after another: send each chunk with ``after`` set to the last run of the chunk before
    (the script's reply names it), so the backfill's runs never overlap each other."""
    rule = overlap_rule(overlap or config.policy.overlap, config.policy.buffer_max, target)
    return [
        FireRequest(
            schedule_id=schedule_id,
            mode=FireMode.BACKFILL,
            fire_time=now,
            meta=meta,
            workflow_id=config.workflow_id,
            target=target,
            overlap=rule,
            input=config.input,
            source=actor,
            fires=[
                Fire(t, now, run_ids(), fire_id(schedule_id, t, FireMode.BACKFILL))
                for t in times[start : start + BACKFILL_CHUNK]
            ],
        )
        for start in range(0, len(times), BACKFILL_CHUNK)
    ]
