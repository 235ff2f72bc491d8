"""What a fire does while an earlier run of its schedule still runs: the overlap policy.

The decision needs the schedule's running runs and held (buffered) runs, which only
Redis sees at the moment of the fire, so the fire script enforces it. The policy is
translated here into the rule the script applies (``OverlapRule``: what to do while
runs are running, how many runs may wait, whether to cancel the running ones), and
``decide`` is that same rule in Python. A contract test runs one decision table
against both (tests/integration/store/test_fire_contract.py).

The times of one request (a backfill, or the catch-up runs of one tick) never block
each other: ``decide_sequence`` decides the first against the runs that were running
before, and the others follow it, each queued when the run before it ends (or all at
once under ``allow_all``); when the first is skipped or dropped, so are the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from service.domain.policies import OverlapPolicy

NO_TARGET = "none"
"""A workflow target whose run is the fire event itself: it succeeds at once, so it
never overlaps with anything."""


class WhileRunning(StrEnum):
    """What a fire does while runs of its schedule are running."""

    FIRE = "fire"
    SKIP = "skip"
    HOLD = "hold"  # wait in the schedule's buffer, if there is room


class CancelOthers(StrEnum):
    """What a held fire asks of the running runs."""

    NO = ""
    CANCEL = "cancel"
    TERMINATE = "terminate"


@dataclass(frozen=True)
class OverlapRule:
    while_running: WhileRunning
    bound: int = 0  # how many runs may be held at once (HOLD)
    cancel: CancelOthers = CancelOthers.NO


class Outcome(StrEnum):
    FIRE = "fire"  # the run is queued now
    SKIP = "skip"  # nothing runs (FireSkipped)
    DROP = "drop"  # the buffer is full (FireDropped)
    HOLD = "hold"  # the run waits in the buffer until the running runs close
    FOLLOW = "follow"  # the run waits for the run before it in its request to end


@dataclass(frozen=True)
class OverlapDecision:
    outcome: Outcome
    cancel: tuple[str, ...] = ()  # running runs asked to cancel (HOLD)
    terminate: bool = False  # ...and to stop at once rather than cooperatively


FIRE = OverlapRule(WhileRunning.FIRE)
SKIP = OverlapRule(WhileRunning.SKIP)
_CANCELS = {
    OverlapPolicy.CANCEL_OTHER: CancelOthers.CANCEL,
    OverlapPolicy.TERMINATE_OTHER: CancelOthers.TERMINATE,
}


@lru_cache(maxsize=1024)
def overlap_rule(policy: OverlapPolicy, buffer_max: int, target: str) -> OverlapRule:
    """The rule the fire script applies for a schedule's overlap policy."""
    if policy == OverlapPolicy.ALLOW_ALL or target == NO_TARGET:
        return FIRE
    if policy == OverlapPolicy.SKIP:
        return SKIP
    bound = 1 if policy == OverlapPolicy.BUFFER_ONE else buffer_max
    return OverlapRule(WhileRunning.HOLD, bound, _CANCELS.get(policy, CancelOthers.NO))


def decide(rule: OverlapRule, running: Sequence[str], held: int) -> OverlapDecision:
    """One fire's outcome, given the runs running and the number of runs held now."""
    if not running or rule.while_running is WhileRunning.FIRE:
        return OverlapDecision(Outcome.FIRE)
    if rule.while_running is WhileRunning.SKIP:
        return OverlapDecision(Outcome.SKIP)
    if held >= rule.bound:
        return OverlapDecision(Outcome.DROP)
    if rule.cancel is CancelOthers.NO:
        return OverlapDecision(Outcome.HOLD)
    return OverlapDecision(
        Outcome.HOLD, tuple(running), terminate=rule.cancel is CancelOthers.TERMINATE
    )


class Then(StrEnum):
    """What the later times of one request do, once its first time is decided."""

    FIRE = "fire"  # queued at once as well (the rule lets runs overlap)
    FOLLOW = "follow"  # each waits for the run before it to end, then is queued
    SKIP = "skip"
    DROP = "drop"


@dataclass(frozen=True)
class SequenceDecision:
    """The outcome of a request's first time, and what its later times do."""

    first: OverlapDecision
    then: Then


_THEN = {Outcome.FIRE: Then.FOLLOW, Outcome.HOLD: Then.FOLLOW, Outcome.SKIP: Then.SKIP}


def decide_sequence(
    rule: OverlapRule, running: Sequence[str], held: int, after_alive: bool = False
) -> SequenceDecision:
    """The outcome of the first of a request's times (against the runs running before the
    request) and what the others do: follow it one after another, or share its fate.
    ``after_alive``: the request continues a backfill whose last run has not ended yet
    (a backfill is sent in chunks), so its first time follows that run too."""
    if rule.while_running is WhileRunning.FIRE:
        return SequenceDecision(decide(rule, running, held), Then.FIRE)
    if after_alive:
        return SequenceDecision(OverlapDecision(Outcome.FOLLOW), Then.FOLLOW)
    first = decide(rule, running, held)
    return SequenceDecision(first, _THEN.get(first.outcome, Then.DROP))


def overlap_decision(
    policy: OverlapPolicy, buffer_max: int, target: str, running: Sequence[str], held: int
) -> OverlapDecision:
    """The overlap policy's decision for one fire."""
    return decide(overlap_rule(policy, buffer_max, target), running, held)
