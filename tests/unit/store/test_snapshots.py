"""The compact snapshot form: exact where Python's == is not."""

from __future__ import annotations

from typing import Any

import orjson

from service.commands import SCHEDULES
from service.domain import schedule as sched
from service.store.snapshots import SCHEDULE_V1, compact, expand


def full_schedule(**config: Any) -> dict[str, Any]:
    base = sched.ScheduleConfig(workflow_id="w", spec={"cron": ["0 0 1 1 *"]})
    snapshot = SCHEDULES.snapshot(sched.ScheduleState("s", base))
    snapshot["config"].update(config)
    return snapshot


def stored_and_back(snapshot: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    stored = orjson.loads(orjson.dumps(compact("schedule", snapshot)))
    return stored, expand("schedule", stored)


def test_a_value_equal_to_its_default_only_by_python_equality_is_kept() -> None:
    snapshot = full_schedule()
    snapshot["config"]["policy"]["catchup_max"] = 100.0
    snapshot["config"]["policy"]["pause_on_failure"] = 0
    stored, back = stored_and_back(snapshot)
    assert stored["config"]["policy"] == {"catchup_max": 100.0, "pause_on_failure": 0}
    assert back == snapshot
    assert type(back["config"]["policy"]["pause_on_failure"]) is int


def test_a_snapshot_missing_a_key_of_the_template_is_stored_whole() -> None:
    snapshot = full_schedule()
    del snapshot["config"]["spec"]["jitter"]
    stored, back = stored_and_back(snapshot)
    assert "f" not in stored and stored == snapshot == back


def test_a_declared_config_equal_only_by_python_equality_is_kept_apart() -> None:
    snapshot = full_schedule(input={"on": 1})
    snapshot["managed"] = {"by": "apply", "source": "a.yaml"}
    snapshot["declared"] = {**snapshot["config"], "input": {"on": True}}
    snapshot["declared_paused"] = False
    stored, back = stored_and_back(snapshot)
    assert stored["declared"] == {
        "workflow_id": "w",
        "spec": {"cron": ["0 0 1 1 *"]},
        "input": {"on": True},
    }
    assert back == snapshot and back["declared"]["input"]["on"] is True


def test_an_expanded_snapshot_shares_nothing_with_the_template() -> None:
    _, back = stored_and_back(full_schedule())
    back["config"]["tags"].append("x")
    back["config"]["spec"]["intervals"].append({"every": "1h"})
    assert SCHEDULE_V1["config"]["tags"] == [] and SCHEDULE_V1["config"]["spec"]["intervals"] == []
    assert expand("schedule", {"f": 1, "config": {"workflow_id": "w"}})["config"]["tags"] == []
