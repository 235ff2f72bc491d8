"""The fire decision, in one place: what a schedule's due times, a trigger or a
backfill turn into.

- ``planning``: which nominal times fire now and which are missed (catch-up, on-time
  grace, ``max_actions``, jitter);
- ``overlap``: what a fire does while earlier runs still run (the overlap policy),
  as the rule the fire script enforces and the same rule in Python, and how the
  times of one backfill or catch-up follow each other;
- ``requests``: the fire script's requests for the ticker, triggers and backfills,
  with their fire ids and run ids;
- ``events``: the events of a fire's outcome.

The fire script (service/store/fire.lua) enforces a request atomically: the lease
fence, the schedule's version and high-water mark, and the overlap rule against the
runs Redis holds at that moment.
"""

from __future__ import annotations

from service.domain.fire.events import (
    FireDropped,
    FireSkipped,
    FiresMissed,
    ScheduleCompleted,
    ScheduleFired,
)
from service.domain.fire.overlap import (
    NO_TARGET,
    Outcome,
    OverlapDecision,
    OverlapRule,
    SequenceDecision,
    Then,
    decide,
    decide_sequence,
    overlap_decision,
    overlap_rule,
)
from service.domain.fire.planning import (
    ON_TIME_GRACE_MS,
    FirePlan,
    Missed,
    due_at,
    plan,
    why_missed,
)
from service.domain.fire.requests import (
    BACKFILL_BOUND,
    BACKFILL_CHUNK,
    DueSchedule,
    Fence,
    Fire,
    FireMode,
    FireRequest,
    backfill_requests,
    backfill_times,
    check_backfill_range,
    fire_id,
    scheduled_request,
    trigger_request,
)

__all__ = [
    "BACKFILL_BOUND",
    "BACKFILL_CHUNK",
    "NO_TARGET",
    "ON_TIME_GRACE_MS",
    "DueSchedule",
    "Fence",
    "Fire",
    "FireDropped",
    "FireMode",
    "FirePlan",
    "FireRequest",
    "FireSkipped",
    "FiresMissed",
    "Missed",
    "Outcome",
    "OverlapDecision",
    "OverlapRule",
    "ScheduleCompleted",
    "ScheduleFired",
    "SequenceDecision",
    "Then",
    "backfill_requests",
    "backfill_times",
    "check_backfill_range",
    "decide",
    "decide_sequence",
    "due_at",
    "fire_id",
    "overlap_decision",
    "overlap_rule",
    "plan",
    "scheduled_request",
    "trigger_request",
    "why_missed",
]
