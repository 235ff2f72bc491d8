"""Files kept by apply: the domain's decisions, overrides, and plans (no Redis)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from service.commands import SCHEDULES, WORKFLOWS
from service.domain import schedule as sched
from service.domain import workflow as wf
from service.domain.managed import Managed
from service.domain.policies import ScheduleStatus
from service.manifests.files import InvalidFiles, load_files
from service.manifests.plan import Action, Current, Options, make_plan, same_schedule

FILE = Managed(source="a.yaml")
CONFIG = sched.ScheduleConfig.model_validate({"workflow_id": "w", "spec": {"cron": ["0 2 * * *"]}})
OTHER = CONFIG.model_copy(update={"name": "changed"})


def fold(state: sched.ScheduleState | None, command: sched.ScheduleCommand) -> sched.ScheduleState:
    for event in sched.decide(state, command):
        state = sched.evolve(state, "s", event)
    assert state is not None
    return state


def applied(paused: bool = False) -> sched.ScheduleState:
    return fold(None, sched.ApplySchedule("s", CONFIG, paused, FILE))


def test_events_of_resources_no_file_keeps_read_as_before() -> None:
    created = sched.ScheduleCreated(schedule=CONFIG)
    assert "managed" not in created.data() and "override" not in created.data()
    assert sched.ScheduleCreated.model_validate(created.data()) == created
    put = wf.WorkflowCreated(
        workflow=wf.WorkflowConfig.model_validate({"target": {"type": "none"}})
    )
    assert "managed" not in put.data()


def test_apply_records_the_file_and_a_change_by_the_api_is_an_override() -> None:
    state = applied()
    assert state.managed == FILE and state.declared == CONFIG and sched.divergence(state) == {}
    [event] = sched.decide(state, sched.UpdateSchedule("s", OTHER))
    assert isinstance(event, sched.ScheduleUpdated) and event.override
    assert event.data()["override"] is True
    state = sched.evolve(state, "s", event)
    assert state is not None
    [paused] = sched.decide(state, sched.PauseSchedule("s", "incident"))
    assert isinstance(paused, sched.SchedulePaused) and paused.override
    state = sched.evolve(state, "s", paused)
    assert sched.divergence(state) == {"name": ("", "changed"), "paused": (False, True)}
    # the next apply reverts both, in one step
    events = sched.decide(state, sched.ApplySchedule("s", CONFIG, False, FILE))
    assert [type(e) for e in events] == [sched.ScheduleUpdated, sched.ScheduleResumed]
    for event in events:
        state = sched.evolve(state, "s", event)
    assert state is not None and sched.divergence(state) == {} and state.status == "active"


def test_a_schedule_no_file_keeps_has_no_override() -> None:
    state = fold(None, sched.CreateSchedule("s", CONFIG))
    [event] = sched.decide(state, sched.UpdateSchedule("s", OTHER))
    assert isinstance(event, sched.ScheduleUpdated) and not event.override
    assert sched.divergence(sched.evolve(state, "s", event)) == {}


def test_a_pause_by_a_failure_is_neither_an_override_nor_resumed_by_apply() -> None:
    state = fold(applied(), sched.PauseSchedule("s", "failed", run_id="run-1"))
    assert state.paused_by_failure and sched.divergence(state) == {}
    assert sched.decide(state, sched.ApplySchedule("s", CONFIG, False, FILE)) == []


def snapshots() -> list[dict[str, object]]:
    """Write-model snapshots in every combination that matters to a no-op."""
    out = []
    for status, failed, declared_paused, managed, declared, config in itertools.product(
        ScheduleStatus, (False, True), (False, True), (FILE, Managed(source="b.yaml"), None),
        (CONFIG, OTHER), (CONFIG, OTHER),
    ):  # fmt: skip
        state = sched.ScheduleState(
            "s", config, status, "", False, managed, declared, declared_paused,
            failed and status is ScheduleStatus.PAUSED,
        )  # fmt: skip
        out.append(SCHEDULES.snapshot(state))
    return out


@pytest.mark.parametrize("paused", [False, True])
def test_the_quick_no_op_check_agrees_with_the_domain(paused: bool) -> None:
    desired = CONFIG.model_dump(mode="json")
    for snapshot in snapshots():
        state = SCHEDULES.restore("s", snapshot)
        nothing = sched.decide(state, sched.ApplySchedule("s", CONFIG, paused, FILE)) == []
        assert same_schedule(snapshot, desired, paused, FILE) == nothing, snapshot


def test_an_apply_after_an_apply_decides_nothing() -> None:
    for paused in (False, True):
        state = applied(paused)
        assert sched.decide(state, sched.ApplySchedule("s", CONFIG, paused, FILE)) == []


FILES = """\
workflows:
  - id: w
    target: {type: none}
    input_schema: {type: object, required: [n]}
schedules:
  - id: s
    workflow_id: w
    spec: {cron: ["0 2 * * *"]}
    input: {n: 1}
"""


def current_of(*states: sched.ScheduleState, workflows: dict[str, Managed | None]) -> Current:
    target = wf.WorkflowConfig.model_validate({"target": {"type": "none"}})
    return Current(
        {
            wid: (WORKFLOWS.snapshot(wf.WorkflowState(wid, target, managed=m)), 1)
            for wid, m in workflows.items()
        },
        {s.id: (SCHEDULES.snapshot(s), 1) for s in states},
        complete=True,
    )


def test_a_plan_refuses_an_unknown_workflow_and_an_input_its_workflow_refuses(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.yaml").write_text(
        FILES + "  - id: t\n    workflow_id: nope\n    spec: {cron: ['0 * * * *']}\n"
        "  - id: u\n    workflow_id: w\n    spec: {cron: ['0 * * * *']}\n    input: {}\n"
    )
    with pytest.raises(InvalidFiles) as caught:
        make_plan(load_files([tmp_path]), Current(), Options())
    assert [str(e) for e in caught.value.errors] == [
        "a.yaml:10:1: workflow_id: workflow 'nope' does not exist",
        "a.yaml:13:1: input: 'n' is a required property",
    ]


def test_prune_deletes_only_what_files_kept_and_not_a_workflow_in_use(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(FILES)
    kept = sched.ScheduleState("gone", CONFIG, managed=FILE, declared=CONFIG)
    by_api = sched.ScheduleState("api-made", CONFIG)
    current = current_of(kept, by_api, workflows={"w": FILE, "old": FILE, "api-wf": None})
    plan = make_plan(load_files([tmp_path]), current, Options(prune=True))
    deletes = [(c.kind, c.id) for c in plan.changes if c.action is Action.DELETE]
    assert deletes == [("schedule", "gone"), ("workflow", "old")]
    # without --prune nothing is deleted
    plan = make_plan(load_files([tmp_path]), current, Options())
    assert [c for c in plan.changes if c.action is Action.DELETE] == []
    # a workflow the files dropped while a schedule that stays uses it is an error
    users = sched.ScheduleState("api-made", CONFIG.model_copy(update={"workflow_id": "old"}))
    current = current_of(users, workflows={"w": FILE, "old": FILE})
    with pytest.raises(InvalidFiles, match="workflow old: is used by schedules"):
        make_plan(load_files([tmp_path]), current, Options(prune=True))


def test_keep_overrides_leaves_an_overridden_schedule_alone(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(FILES)
    manifest = load_files([tmp_path])
    state = fold(None, sched.ApplySchedule("s", manifest.schedules[0].config, False, FILE))
    state = fold(state, sched.PauseSchedule("s", "by hand"))
    current = current_of(state, workflows={"w": FILE})
    planned = make_plan(manifest, current, Options(keep_overrides=True))
    [keep] = [c for c in planned.changes if c.id == "s"]
    assert keep.action is Action.KEEP and keep.events == ()
    assert [(d.field, d.before, d.after) for d in keep.diffs] == [("paused", True, False)]
    [revert] = [c for c in make_plan(manifest, current, Options()).changes if c.id == "s"]
    assert revert.action is Action.UPDATE and revert.reason == "reverts an override"
    assert [(d.field, d.before, d.after) for d in revert.diffs] == [("paused", True, False)]
