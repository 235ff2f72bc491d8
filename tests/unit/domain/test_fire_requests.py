"""The fire requests the ticker, triggers and backfills send to the fire script."""

from __future__ import annotations

import itertools

import pytest

from service.domain.fire import (
    BACKFILL_BOUND,
    BACKFILL_CHUNK,
    DueSchedule,
    Fence,
    FireMode,
    backfill_requests,
    backfill_times,
    fire_id,
    scheduled_request,
    trigger_request,
)
from service.domain.fire.overlap import CancelOthers, OverlapRule, WhileRunning
from service.domain.policies import OverlapPolicy
from service.domain.schedule import ScheduleConfig
from service.errors import InvalidInput

NOW = 1_768_478_400_000  # 2026-01-15T12:00:00Z
MINUTE = 60_000
CONFIG = ScheduleConfig.model_validate(
    {
        "workflow_id": "wf",
        "spec": {"cron": ["* * * * *"]},
        "policy": {"overlap": "buffer_all", "buffer_max": 7},
        "input": {"a": 1},
    }
)


def ids() -> itertools.count[int]:
    return itertools.count()


def test_two_triggers_in_one_millisecond_are_two_fires() -> None:
    counter = ids()
    first, second = (
        trigger_request(
            "s", CONFIG, "http", NOW, "api:key", {}, None, run_ids=lambda: f"r{next(counter)}"
        )
        for _ in range(2)
    )
    assert first.fires[0].fire_id == f"s:{NOW}:api:r0"
    assert second.fires[0].fire_id == f"s:{NOW}:api:r1"


def test_a_person_triggers_manually_a_program_through_the_api() -> None:
    assert trigger_request("s", CONFIG, "http", NOW, "cli:me", {}, None).mode is FireMode.MANUAL
    assert trigger_request("s", CONFIG, "http", NOW, "ui:me", {}, None).mode is FireMode.MANUAL
    assert trigger_request("s", CONFIG, "http", NOW, "token:x", {}, None).mode is FireMode.API


def test_a_trigger_follows_the_schedule_policy_unless_told_otherwise() -> None:
    plain = trigger_request("s", CONFIG, "http", NOW, "api:k", {}, 5)
    assert plain.overlap == OverlapRule(WhileRunning.HOLD, 7, CancelOthers.NO)
    assert plain.input == 5 and plain.source == "api:k"
    told = trigger_request("s", CONFIG, "http", NOW, "api:k", {}, None, OverlapPolicy.SKIP)
    assert told.overlap == OverlapRule(WhileRunning.SKIP)
    none = trigger_request("s", CONFIG, "none", NOW, "api:k", {}, None)
    assert none.overlap == OverlapRule(WhileRunning.FIRE)


def test_backfill_runs_each_time_in_chunks_with_deterministic_fire_ids() -> None:
    end = NOW + (BACKFILL_CHUNK + 9) * MINUTE
    times = backfill_times(CONFIG.spec, NOW, end)
    assert times[0] == NOW and times[-1] == end and len(times) == BACKFILL_CHUNK + 10
    requests = backfill_requests("s", CONFIG, "http", times, NOW, "api:k", {})
    assert [len(r.fires) for r in requests] == [BACKFILL_CHUNK, 10]
    assert [f.nominal for r in requests for f in r.fires] == times
    assert (
        requests[1].fires[-1].fire_id
        == fire_id("s", end, FireMode.BACKFILL)
        == (f"s:{end}:backfill")
    )
    assert all(r.mode is FireMode.BACKFILL and r.input == {"a": 1} for r in requests)


def test_backfill_ranges_are_bounded() -> None:
    with pytest.raises(InvalidInput, match="must not be before start"):
        backfill_times(CONFIG.spec, NOW, NOW - 1)
    with pytest.raises(InvalidInput, match=f"more than {BACKFILL_BOUND}"):
        backfill_times(CONFIG.spec, NOW, NOW + BACKFILL_BOUND * MINUTE)


@pytest.mark.parametrize(("status", "config"), [("paused", CONFIG), ("active", None)])
def test_a_schedule_not_to_plan_gets_a_request_that_only_checks(
    status: str, config: ScheduleConfig | None
) -> None:
    due = DueSchedule("s", 3, status, 0, NOW)
    request = scheduled_request(due, config, "http", NOW + 5 * MINUTE, Fence("t", 2))
    assert request.fires == [] and request.missed is None
    assert (request.version, request.hwm, request.fence) == (3, NOW, Fence("t", 2))


def test_the_ticker_fires_what_is_due_with_its_fence() -> None:
    due = DueSchedule("s", 3, "active", 0, NOW)
    counter = ids()
    request = scheduled_request(
        due, CONFIG, "http", NOW + MINUTE, Fence("t", 2), run_ids=lambda: f"r{next(counter)}"
    )
    [fire] = request.fires
    assert (fire.nominal, fire.run_id, fire.fire_id) == (
        NOW + MINUTE,
        "r0",
        f"s:{NOW + MINUTE}:schedule",
    )
    assert request.meta == {"actor": "ticker:t", "epoch": 2}
    assert (request.new_hwm, request.next_due) == (NOW + MINUTE, NOW + 2 * MINUTE)
