"""Properties of the fire plan on generated schedules, policies and ticker histories
(steps on time, and downtimes of any length), checked against the spec's own times.

A ticker history: from the schedule's creation, the clock moves by generated steps;
at each step the ticker asks for the request of the schedule (``scheduled_request``)
and, as the fire script does, moves the high-water mark and counts the actions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.fire import (
    DueSchedule,
    Fence,
    FireRequest,
    Outcome,
    Then,
    decide_sequence,
    overlap_rule,
    scheduled_request,
)
from service.domain.fire.overlap import WhileRunning
from service.domain.policies import CatchupPolicy, OverlapPolicy
from service.domain.schedule import ScheduleConfig
from service.domain.spec import Spec, iter_fire_times

SETTINGS = settings(max_examples=200, deadline=None, database=None)
START = 1_768_478_400_000  # 2026-01-15T12:00:00Z
FENCE = Fence("ticker-a", 1)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    jitter = draw(st.sampled_from([0, 0, 1, 5, 30, 90, 600, 7200]))
    if draw(st.booleans()):
        every = draw(st.sampled_from([1, 7, 60, 300, 3600]))
        offset = draw(st.integers(0, every - 1))
        times: dict[str, object] = {"intervals": [{"every": f"{every}s", "offset": f"{offset}s"}]}
    else:
        times = {"cron": [draw(st.sampled_from(["* * * * *", "*/5 * * * *", "0,7 * * * *"]))]}
    return Spec.model_validate({**times, "jitter": f"{jitter}s"})


@st.composite
def configs(draw: st.DrawFn) -> ScheduleConfig:
    policy = {
        "catchup": draw(st.sampled_from(list(CatchupPolicy))),
        "catchup_window": f"{draw(st.sampled_from([60, 600, 86_400, 365 * 86_400]))}s",
        "catchup_max": draw(st.integers(1, 12)),
    }
    max_actions = draw(st.sampled_from([None, None, None, 1, 2, 5, 30]))
    return ScheduleConfig.model_validate(
        {"workflow_id": "wf", "spec": draw(specs()), "policy": policy, "max_actions": max_actions}
    )


# steps of the clock in seconds: mostly about on time, sometimes a downtime
steps = st.lists(
    st.one_of(st.integers(0, 90), st.integers(90, 20_000)),
    min_size=1,
    max_size=25,
)


@dataclass
class History:
    """What a ticker history produced: each step's request and the clock at it."""

    config: ScheduleConfig
    steps: list[tuple[int, int, FireRequest]] = field(default_factory=list)  # (hwm, now, req)
    completed: bool = False

    @property
    def fires(self) -> list[int]:
        return [f.nominal for _, _, r in self.steps for f in r.fires]


def run(config: ScheduleConfig, advances: list[int]) -> History:
    counter = itertools.count()
    history = History(config)
    hwm, actions, now = START, 0, START
    for advance in advances:
        now += advance * 1000
        due = DueSchedule("s", 1, "active", actions, hwm)
        request = scheduled_request(
            due, config, "http", now, FENCE, run_ids=lambda: f"run_{next(counter)}"
        )
        history.steps.append((hwm, now, request))
        hwm = request.new_hwm
        actions += len(request.fires)
        if config.max_actions is not None and actions >= config.max_actions:
            history.completed = True
            break
    return history


def between(spec: Spec, after: int, until: int) -> list[int]:
    return list(itertools.takewhile(lambda t: t <= until, iter_fire_times(spec, after)))


@SETTINGS
@given(configs(), steps)
def test_every_nominal_time_gets_exactly_one_outcome(
    config: ScheduleConfig, advances: list[int]
) -> None:
    history = run(config, advances)
    spec = config.spec
    decided: list[int] = []
    for hwm, _now, request in history.steps:
        due = between(spec, hwm, request.new_hwm)
        assert request.new_hwm == (due[-1] if due else hwm)
        fired = [f.nominal for f in request.fires]
        assert fired == sorted(set(fired)) and set(fired) <= set(due)
        not_fired = [t for t in due if t not in fired]
        missed = request.missed
        if not_fired:
            assert missed is not None
            assert (missed.count, missed.first, missed.last) == (
                len(not_fired),
                not_fired[0],
                not_fired[-1],
            )
        else:
            assert missed is None
        decided += due
    # the steps' ranges (hwm, new_hwm] tile the history: every time is decided once
    assert decided == between(spec, START, history.steps[-1][2].new_hwm)


@SETTINGS
@given(configs(), steps)
def test_nothing_due_is_left_behind(config: ScheduleConfig, advances: list[int]) -> None:
    """After a step, the next nominal time is not due yet, and the next look is its time."""
    history = run(config, advances)
    for _hwm, now, request in history.steps:
        if history.completed and request is history.steps[-1][2]:
            continue
        following = next(iter_fire_times(config.spec, request.new_hwm), None)
        if following is None:
            assert request.next_due is None
            continue
        assert request.next_due is not None and request.next_due > now
        assert following <= request.next_due


@SETTINGS
@given(configs(), steps)
def test_no_fire_id_twice(config: ScheduleConfig, advances: list[int]) -> None:
    history = run(config, advances)
    ids = [f.fire_id for _, _, r in history.steps for f in r.fires]
    runs = [f.run_id for _, _, r in history.steps for f in r.fires]
    assert len(ids) == len(set(ids)) and len(runs) == len(set(runs))
    assert len(history.fires) == len(set(history.fires))


@SETTINGS
@given(configs(), steps)
def test_catch_up_never_exceeds_catchup_max(config: ScheduleConfig, advances: list[int]) -> None:
    history = run(config, advances)
    for _, _, request in history.steps:
        assert len(request.fires) <= config.policy.catchup_max
        if config.policy.catchup is not CatchupPolicy.ALL:
            assert len(request.fires) <= 1
    if config.max_actions is not None:
        assert len(history.fires) <= config.max_actions


@SETTINGS
@given(configs(), steps)
def test_jitter_never_moves_a_fire_past_the_next_nominal_time(
    config: ScheduleConfig, advances: list[int]
) -> None:
    spec = config.spec
    for _, now, request in run(config, advances).steps:
        for fire in request.fires:
            following = next(iter_fire_times(spec, fire.nominal), None)
            assert fire.nominal <= fire.at <= now
            assert fire.at - fire.nominal < max(spec.jitter, 1)
            if following is not None:
                assert fire.at < following


RUNS = (Outcome.FIRE, Outcome.HOLD, Outcome.FOLLOW)


@SETTINGS
@given(
    configs(),
    steps,
    st.sampled_from(list(OverlapPolicy)),
    st.sampled_from(["http", "none"]),
    st.lists(st.sampled_from(["run_a", "run_b"]), max_size=2, unique=True),
    st.integers(0, 3),
)
def test_the_catch_up_runs_of_a_step_never_block_each_other(
    config: ScheduleConfig,
    advances: list[int],
    overlap: OverlapPolicy,
    target: str,
    running: list[str],
    held: int,
) -> None:
    """A step's fires decided as the fire script decides them (the first against the
    runs running before the step, the others after it): all run or none does, all run
    when nothing ran before, and at most one is queued at once unless runs may overlap."""
    rule = overlap_rule(overlap, 2, target)
    for _, _, request in run(config, advances).steps:
        if not request.fires:
            continue
        decision = decide_sequence(rule, running, held)
        later = [decision.then] * (len(request.fires) - 1)
        ran = [decision.first.outcome in RUNS, *(t in (Then.FIRE, Then.FOLLOW) for t in later)]
        assert all(ran) or not any(ran)
        if not running:
            assert all(ran)
        at_once = [decision.first.outcome is Outcome.FIRE, *(t is Then.FIRE for t in later)]
        if rule.while_running is not WhileRunning.FIRE:
            assert sum(at_once) <= 1
        else:
            assert all(at_once)
