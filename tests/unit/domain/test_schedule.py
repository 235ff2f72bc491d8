"""The Schedule aggregate's decisions, without Redis."""

from __future__ import annotations

import pytest

from service.domain import schedule as sched
from service.domain.policies import ScheduleStatus
from service.domain.runs import RunStatus
from service.domain.spec import Spec
from service.errors import AlreadyExists, ScheduleNotFound

CONFIG = sched.ScheduleConfig(workflow_id="w", spec=Spec(cron=["0 2 * * *"]))


def fold(
    events: list[sched.Event], state: sched.ScheduleState | None = None
) -> sched.ScheduleState | None:
    for event in events:
        state = sched.evolve(state, "s", event)
    return state


def test_create_then_state() -> None:
    events = sched.decide(None, sched.CreateSchedule("s", CONFIG, paused=True, note="later"))
    assert events == [sched.ScheduleCreated(schedule=CONFIG, paused=True, note="later")]
    state = fold(events)
    assert state is not None and state.status is ScheduleStatus.PAUSED and state.note == "later"


def test_create_over_a_live_schedule_is_refused() -> None:
    state = fold(sched.decide(None, sched.CreateSchedule("s", CONFIG)))
    with pytest.raises(AlreadyExists, match="schedule 's' already exists"):
        sched.decide(state, sched.CreateSchedule("s", CONFIG))


def test_create_after_delete_is_allowed() -> None:
    state = fold([sched.ScheduleCreated(schedule=CONFIG), sched.ScheduleDeleted()])
    assert state is not None and state.deleted
    assert sched.decide(state, sched.CreateSchedule("s", CONFIG))


@pytest.mark.parametrize(
    "command",
    [
        sched.UpdateSchedule("s", CONFIG),
        sched.PauseSchedule("s"),
        sched.ResumeSchedule("s"),
        sched.DeleteSchedule("s"),
    ],
)
def test_commands_on_a_missing_or_deleted_schedule(command: sched.ScheduleCommand) -> None:
    with pytest.raises(ScheduleNotFound):
        sched.decide(None, command)
    deleted = fold([sched.ScheduleCreated(schedule=CONFIG), sched.ScheduleDeleted()])
    with pytest.raises(ScheduleNotFound):
        sched.decide(deleted, command)


def test_update_records_the_changed_fields_and_nothing_when_equal() -> None:
    state = fold([sched.ScheduleCreated(schedule=CONFIG)])
    assert sched.decide(state, sched.UpdateSchedule("s", CONFIG)) == []
    new = CONFIG.model_copy(update={"name": "n", "tags": ["a"]})
    [event] = sched.decide(state, sched.UpdateSchedule("s", new))
    assert isinstance(event, sched.ScheduleUpdated) and event.changed == ["name", "tags"]
    assert fold([event], state) == sched.ScheduleState("s", new)


def test_pause_and_resume_are_idempotent() -> None:
    active = fold([sched.ScheduleCreated(schedule=CONFIG)])
    assert sched.decide(active, sched.ResumeSchedule("s")) == []
    paused = fold(sched.decide(active, sched.PauseSchedule("s", "why")), active)
    assert paused is not None and paused.status is ScheduleStatus.PAUSED and paused.note == "why"
    assert sched.decide(paused, sched.PauseSchedule("s")) == []
    resumed = fold(sched.decide(paused, sched.ResumeSchedule("s", "ok")), paused)
    assert resumed is not None and resumed.status is ScheduleStatus.ACTIVE


def test_tags_are_validated_sorted_and_unique() -> None:
    config = sched.ScheduleConfig(
        workflow_id="w", spec=Spec(cron=["* * * * *"]), tags=["b", "a", "b"]
    )
    assert config.tags == ["a", "b"]
    with pytest.raises(ValueError, match="tag"):
        sched.ScheduleConfig(workflow_id="w", spec=Spec(cron=["* * * * *"]), tags=["no space"])


PAUSING = sched.ScheduleConfig(
    workflow_id="w",
    spec=Spec(cron=["0 2 * * *"]),
    policy=sched.SchedulePolicy(pause_on_failure=True),
)


@pytest.mark.parametrize(
    ("config", "trigger", "status", "pauses"),
    [
        (PAUSING, "schedule", RunStatus.FAILED, True),
        (PAUSING, "schedule", RunStatus.TIMED_OUT, True),
        (PAUSING, "schedule", RunStatus.SUCCEEDED, False),
        (PAUSING, "schedule", RunStatus.CANCELLED, False),
        (PAUSING, "schedule", RunStatus.DEAD_LETTERED, False),
        (PAUSING, "manual", RunStatus.FAILED, False),
        (PAUSING, "backfill", RunStatus.FAILED, False),
        (CONFIG, "schedule", RunStatus.FAILED, False),
    ],
)
def test_pause_after_a_failed_scheduled_run(
    config: sched.ScheduleConfig, trigger: str, status: RunStatus, pauses: bool
) -> None:
    state = sched.ScheduleState("s", config)
    pause = sched.pause_after_run(state, "run_1", trigger, status)
    assert (pause is not None) is pauses
    if pause is not None:
        assert pause == sched.PauseSchedule("s", "paused after run run_1 failed", run_id="run_1")
    gone = sched.ScheduleState("s", config, deleted=True)
    assert sched.pause_after_run(gone, "run_1", trigger, status) is None
    assert sched.pause_after_run(None, "run_1", trigger, status) is None
