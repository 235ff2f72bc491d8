"""The events of a fire's outcome (written by the fire script, service/store/fire.lua)."""

from __future__ import annotations

from service.domain.events import Event, register
from service.domain.types import Instant


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
    # the run this one waits for: the previous time of its backfill or catch-up
    after: str | None = None


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
    # what decided it (absent from events written before they were recorded)
    policy: str | None = None
    window_start: Instant | None = None
    catchup_max: int | None = None


@register
class ScheduleCompleted(Event):
    aggregate = "schedule"
    action_count: int
