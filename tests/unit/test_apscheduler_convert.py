"""APScheduler 3 triggers and jobs converted into cronstream specs and bodies.

Every converted trigger is checked against APScheduler's own ``get_next_fire_time``,
iterated as its scheduler does, on the next 20 times: they must be equal, except at
the daylight-saving changes listed here (where APScheduler runs a daily job an hour
late, or twice).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.spec import Spec, next_fire_times
from service.importers.apscheduler import (
    HANDLER,
    Skipped,
    convert_job,
    convert_jobs,
    cronstream_id,
    workflow_id,
)
from service.importers.apscheduler_call import call_job
from service.importers.apscheduler_cron import Unconvertible
from service.importers.apscheduler_store import StoredJob
from service.importers.apscheduler_triggers import spec_parts
from service.importers.yaml_out import dump
from service.worker.targets.base import PermanentFailure, RunContext

BERLIN = ZoneInfo("Europe/Berlin")
AFTER = datetime(2026, 1, 1, tzinfo=UTC)
NOW_MS = int(AFTER.timestamp() * 1000)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(value: datetime) -> int:
    return (value - EPOCH) // timedelta(milliseconds=1)


def apscheduler_times(trigger: Any, after: datetime, count: int) -> list[int]:
    """APScheduler's own next times after ``after``, as its scheduler asks for them."""
    out: list[int] = []
    previous = None
    now = after + timedelta(microseconds=1)
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None:
            break
        out.append(ms(fire))
        previous = now = fire
    return out


def cronstream_times(trigger: Any, after: datetime, count: int) -> list[int]:
    spec = Spec.model_validate(spec_parts(trigger, ms(after)).body())
    return next_fire_times(spec, ms(after), count)


SAME_TIMES = [
    CronTrigger(hour=9, minute=30, day_of_week="mon-fri", timezone=BERLIN),
    CronTrigger(day="last fri", hour=1, timezone="UTC"),
    CronTrigger(day="1-7", day_of_week="mon", hour=8, timezone=BERLIN),
    CronTrigger(day="*/2", day_of_week="sat,sun", timezone="America/New_York"),
    CronTrigger(day_of_week="*/2", hour=3, timezone="UTC"),
    CronTrigger(year="2026-2027", month="*/3", day="last", timezone="Asia/Tokyo"),
    CronTrigger(second="*/20", minute="5-10", timezone="UTC"),
    CronTrigger(day="2nd mon,15", hour=12, timezone="UTC"),
    CronTrigger(minute="*/15", hour="9-17", day="1-10", month="feb-apr", timezone=BERLIN),
    CronTrigger.from_crontab("*/15 9-17 * * 1-5", timezone=BERLIN),
    CronTrigger(hour=6, start_date="2026-01-10", end_date="2026-01-20", timezone=BERLIN),
    CronTrigger(hour=5, timezone=timezone(timedelta(hours=3))),
    IntervalTrigger(minutes=90, start_date=datetime(2025, 5, 5, 13, 7, 11, tzinfo=UTC)),
    IntervalTrigger(days=1, start_date=datetime(2025, 3, 1, 2, 30, tzinfo=BERLIN)),
    DateTrigger(datetime(2026, 2, 3, 4, 5, 6, tzinfo=BERLIN)),
    DateTrigger(datetime(2026, 2, 3, 4, 5, 6, 500000, tzinfo=BERLIN)),
    OrTrigger(
        [CronTrigger(hour=2, timezone=BERLIN), CronTrigger(hour=14, minute=15, timezone=BERLIN)]
    ),
]


@pytest.mark.parametrize("trigger", SAME_TIMES, ids=str)
def test_the_next_20_times_are_apschedulers_own(trigger: Any) -> None:
    expected = apscheduler_times(trigger, AFTER, 20)
    assert expected  # a trigger with times, so the comparison compares something
    assert cronstream_times(trigger, AFTER, 20) == expected


def test_a_crontab_read_by_apscheduler_keeps_its_weekdays() -> None:
    # APScheduler numbers weekdays from Monday = 0, so its "1-5" is Tuesday to Saturday:
    # the converted expression names the days it really ran on
    parts = spec_parts(CronTrigger.from_crontab("0 9 * * 1-5", timezone="UTC"), NOW_MS)
    assert parts.cron == ["0 9 * * TUE-SAT"]


def test_day_of_month_and_weekday_both_restricted_stay_an_and() -> None:
    parts = spec_parts(CronTrigger(day="1-7", day_of_week="mon", hour=8, timezone=BERLIN), NOW_MS)
    assert parts.cron == ["0 8 1-7 * *"]
    assert parts.exclude == ["* * * * TUE-SUN"]


def _difference(trigger: Any, after: datetime) -> tuple[list[str], list[str]]:
    ours = cronstream_times(trigger, after, 20)
    theirs = apscheduler_times(trigger, after, 20)
    days = {datetime.fromtimestamp(t / 1000, UTC).date() for t in ours + theirs}
    last = max(days)  # the one list may run a time further than the other
    only = [t for t in theirs if t not in ours]
    extra = [t for t in ours if t not in theirs]

    def text(times: list[int]) -> list[str]:
        stamps = [datetime.fromtimestamp(t / 1000, UTC) for t in times]
        return [s.isoformat() for s in stamps if s.date() != last]

    return text(only), text(extra)


def test_berlin_at_0230_differs_only_at_the_dst_changes() -> None:
    """The only differences, and why cronstream's are the right ones:

    - 2026-03-29, 02:30 does not exist in Berlin (02:00 → 03:00). APScheduler runs at
      03:30 CEST, an hour late; cronstream at 03:00 CEST, the first instant after the gap,
      as Vixie cron does.
    - 2026-10-25, 02:30 happens twice (03:00 → 02:00). APScheduler runs the daily job
      twice, at 02:30 CEST and 02:30 CET; cronstream once, at the first.
    """
    trigger = CronTrigger(hour=2, minute=30, timezone=BERLIN)
    spring = _difference(trigger, datetime(2026, 3, 20, tzinfo=UTC))
    assert spring == (["2026-03-29T01:30:00+00:00"], ["2026-03-29T01:00:00+00:00"])
    autumn = _difference(trigger, datetime(2026, 10, 15, tzinfo=UTC))
    assert autumn == (["2026-10-25T01:30:00+00:00"], [])


@pytest.mark.parametrize(
    "trigger",
    [
        CronTrigger(minute="*/30", timezone=BERLIN),
        CronTrigger(minute=15, hour="*", timezone=BERLIN),
        IntervalTrigger(hours=1, start_date=datetime(2026, 1, 1, tzinfo=BERLIN)),
    ],
    ids=str,
)
@pytest.mark.parametrize(
    "after", [datetime(2026, 3, 29, 0, 10, tzinfo=UTC), datetime(2026, 10, 24, 23, 10, tzinfo=UTC)]
)
def test_hourly_and_interval_jobs_agree_across_the_dst_changes(
    trigger: Any, after: datetime
) -> None:
    assert cronstream_times(trigger, after, 20) == apscheduler_times(trigger, after, 20)


def _matches(trigger: CronTrigger, at_ms: int) -> bool:
    at = datetime.fromtimestamp(at_ms / 1000, UTC)
    return ms(trigger.get_next_fire_time(None, at)) == at_ms


def test_and_keeps_the_interval_times_the_cron_matches() -> None:
    # APScheduler 3's AndTrigger loops without end after its first time, so the check is
    # the definition: every interval time the cron trigger matches, and no other
    interval = IntervalTrigger(hours=2, start_date=datetime(2025, 5, 5, tzinfo=UTC))
    weekend = CronTrigger(day_of_week="sat,sun", hour="*", minute=0, timezone=BERLIN)
    ours = cronstream_times(AndTrigger([interval, weekend]), AFTER, 20)
    every = apscheduler_times(interval, AFTER, 24 * 12)
    expected = [t for t in every if _matches(weekend, t)][:20]
    assert len(expected) == 20 and ours == expected
    first = AndTrigger([interval, weekend]).get_next_fire_time(None, AFTER)
    assert ours[0] == ms(first)


def test_and_of_two_cron_triggers_is_their_common_times() -> None:
    a = CronTrigger(minute="*/10", hour="*", timezone=BERLIN)
    b = CronTrigger(minute="*/15", hour="8-10", timezone=BERLIN)
    ours = cronstream_times(AndTrigger([a, b]), AFTER, 20)
    expected = [t for t in apscheduler_times(a, AFTER, 500) if _matches(b, t)][:20]
    assert ours == expected


def test_or_of_intervals_is_their_union_with_a_note() -> None:
    parts = spec_parts(
        OrTrigger(
            [
                IntervalTrigger(hours=7, start_date=datetime(2025, 5, 5, tzinfo=UTC)),
                IntervalTrigger(minutes=45, start_date=datetime(2025, 6, 5, 0, 3, tzinfo=UTC)),
            ]
        ),
        NOW_MS,
    )
    assert parts.intervals == [(7 * 3_600_000, 5 * 3_600_000), (45 * 60_000, 3 * 60_000)]
    assert parts.start_ms is None  # both starts are past: they bound nothing any more
    assert "own phase" in parts.notes[0]


@pytest.mark.parametrize(
    ("trigger", "reason"),
    [
        (CronTrigger(week="*/2", hour=1), "week-of-year"),
        (CronTrigger(year="2026,2028", hour=1), "single run of years"),
        (
            OrTrigger([CronTrigger(hour=1, timezone=BERLIN), CronTrigger(hour=2, timezone="UTC")]),
            "different time zones",
        ),
        (
            OrTrigger(
                [CronTrigger(hour=1, timezone="UTC"), DateTrigger(datetime(2030, 1, 1, tzinfo=UTC))]
            ),
            "no one-off times",
        ),
        (
            OrTrigger(
                [
                    CronTrigger(day=1, day_of_week="mon", timezone="UTC"),
                    CronTrigger(hour=5, timezone="UTC"),
                ]
            ),
            "would remove the others' times",
        ),
        (
            OrTrigger(
                [
                    CronTrigger(hour=1, start_date="2030-01-01", timezone="UTC"),
                    CronTrigger(hour=2, start_date="2031-01-01", timezone="UTC"),
                ]
            ),
            "start or end at different dates",
        ),
        (
            AndTrigger([CronTrigger(day="last fri", timezone="UTC"), IntervalTrigger(hours=1)]),
            "no cron field",
        ),
        (AndTrigger([IntervalTrigger(hours=1), IntervalTrigger(hours=3)]), "two interval triggers"),
        (IntervalTrigger(seconds=1.0005, start_date=AFTER), "whole milliseconds"),
        (IntervalTrigger(seconds=0.5, start_date=AFTER), "at least 1s"),
        (CronTrigger(hour=1, timezone=timezone(timedelta(hours=5, minutes=30))), "no IANA name"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_what_cannot_be_said_is_refused_with_the_reason(trigger: Any, reason: str) -> None:
    with pytest.raises(Unconvertible, match=reason):
        spec_parts(trigger, NOW_MS)


def state(trigger: Any, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": 1,
        "id": "nightly",
        "func": "jobs.billing:run",
        "trigger": trigger,
        "executor": "default",
        "args": ("eu",),
        "kwargs": {"full": True},
        "name": "run",
        "misfire_grace_time": 30,
        "coalesce": True,
        "max_instances": 1,
        "next_run_time": AFTER,
    }
    base.update(fields)
    return base


DAILY = CronTrigger(hour=2, minute=30, timezone=BERLIN, jitter=20)


def test_a_job_becomes_a_schedule_of_a_python_workflow() -> None:
    schedule, workflow, notes = convert_job(state(DAILY), NOW_MS)
    assert schedule == {
        "id": "nightly",
        "name": "run",
        "description": "Imported from APScheduler job 'nightly'",
        "workflow_id": "jobs.billing-run",
        "spec": {"cron": ["30 2 * * *"], "timezone": "Europe/Berlin", "jitter": "20s"},
        "policy": {"catchup_window": "30s", "catchup": "latest", "overlap": "skip"},
        "input": {"func": "jobs.billing:run", "args": ["eu"], "kwargs": {"full": True}},
        "tags": ["apscheduler"],
    }
    assert workflow["id"] == "jobs.billing-run"
    assert workflow["target"] == {"type": "python", "handler": HANDLER}
    assert workflow["input_schema"]["properties"]["func"] == {"const": "jobs.billing:run"}
    assert workflow["retry"] == {"max_attempts": 1}
    assert notes == []


def test_policies_paused_jobs_and_one_offs() -> None:
    schedule, _, notes = convert_job(
        state(DAILY, coalesce=False, max_instances=3, misfire_grace_time=None, next_run_time=None),
        NOW_MS,
    )
    assert schedule["policy"] == {"catchup": "all", "catchup_max": 10_000, "overlap": "allow_all"}
    assert schedule["paused"] is True
    assert any("max_instances=3" in n for n in notes)
    once, _, _ = convert_job(state(DateTrigger(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))), NOW_MS)
    assert once["max_actions"] == 1
    assert once["spec"] == {
        "cron": ["5 4 3 2 1 *"],
        "timezone": "UTC",
        "start_at": "2030-01-02T03:04:05Z",
        "end_at": "2030-01-02T03:04:05.001Z",
    }


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"args": (datetime(2020, 1, 1),)}, r"args\[0\] is a datetime"),
        ({"kwargs": {"n": float("nan")}}, "JSON cannot carry"),
        ({"kwargs": {1: "x"}}, "JSON keys are text"),
        ({"trigger": DateTrigger(datetime(2025, 1, 1, tzinfo=UTC))}, "has passed"),
        (
            {"trigger": CronTrigger(hour=1, end_date="2025-06-01", timezone="UTC")},
            "nothing is left",
        ),
        ({"func": "no_colon"}, "not a 'module:function' reference"),
    ],
)
def test_jobs_that_cannot_be_converted_say_why(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unconvertible, match=reason):
        convert_job({**state(DAILY), **fields}, NOW_MS)


def test_invalid_ids_map_deterministically_to_valid_distinct_ids() -> None:
    assert cronstream_id("nightly") == ("nightly", False)
    first, renamed = cronstream_id("report for ünïcode/team a")
    assert renamed and first == cronstream_id("report for ünïcode/team a")[0]
    assert first != cronstream_id("report for ünïcode/team b")[0]
    assert cronstream_id("a" * 200)[0] != cronstream_id("a" * 201)[0]
    for value in (
        first,
        cronstream_id("-x")[0],
        cronstream_id("é")[0],
        cronstream_id("a" * 300)[0],
    ):
        assert len(value) <= 128 and value[0].isalnum()
        assert cronstream_id(value) == (value, False)
    assert workflow_id("a.b:c") != workflow_id("a:b.c")


def test_a_store_converts_job_by_job() -> None:
    jobs = [
        StoredJob("nightly", state(DAILY)),
        StoredJob("odd id!", state(DAILY, id="odd id!", func="jobs.billing:other")),
        StoredJob("weekly", state(CronTrigger(week="*/2"), id="weekly")),
        StoredJob(
            "broken", None, "cannot read its state: ModuleNotFoundError: No module named 'x'"
        ),
    ]
    result = convert_jobs(jobs, NOW_MS)
    assert [s["id"] for s in result.schedules] == ["nightly", cronstream_id("odd id!")[0]]
    assert [w["id"] for w in result.workflows] == ["jobs.billing-other", "jobs.billing-run"]
    assert [(s.job_id, s.reason.split(":")[0]) for s in result.skipped] == [
        ("weekly", "week='*/2'"),
        ("broken", "cannot read its state"),
    ]
    assert [job for job, _ in result.notes] == ["odd id!"]


def _context(data: Any) -> RunContext:
    return RunContext("run_1", "s", "w", "schedule", None, 1, data, 5.0)


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


async def echo_async(*args: Any, **kwargs: Any) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"args": list(args), "kwargs": kwargs, "async": True}


async def test_the_target_calls_the_function_with_args_and_kwargs() -> None:
    here = __name__
    out = await call_job(_context({"func": f"{here}:echo", "args": [1, "a"], "kwargs": {"k": 2}}))
    assert out == {"args": [1, "a"], "kwargs": {"k": 2}}
    out = await call_job(_context({"func": f"{here}:echo_async", "args": [], "kwargs": {}}))
    assert out == {"args": [], "kwargs": {}, "async": True}
    with pytest.raises(PermanentFailure, match="cannot find"):
        await call_job(_context({"func": f"{here}:missing", "args": [], "kwargs": {}}))
    with pytest.raises(PermanentFailure, match="input must be"):
        await call_job(_context({"func": f"{here}:echo", "args": "x", "kwargs": {}}))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(JSON_VALUES)
def test_the_file_writer_writes_yaml_that_reads_back_equal(value: Any) -> None:
    document = {"schedules": [{"id": "x", "input": value}]}
    assert yaml.safe_load(dump(document)) == document


def test_the_file_writer_escapes_what_yaml_reads_otherwise() -> None:
    tricky = ["a\x7fb", "\u2028x\u2029", "\x85", "\ufeffz", "\ud800x", "yes", "1e16", "null", "*a"]
    document = {"input": tricky, "yes": 1e16, "on": [{}, []]}
    assert yaml.safe_load(dump(document)) == document


@pytest.mark.parametrize("unit", ["days", "weeks", "months", "years"])
def test_a_calendar_interval_of_one_unit_is_a_cron_expression(unit: str) -> None:
    trigger = CalendarIntervalTrigger(
        **{unit: 1}, hour=10, minute=15, start_date="2026-01-31", timezone=BERLIN
    )
    expected = apscheduler_times(trigger, AFTER, 20)
    assert len(expected) == 20
    assert cronstream_times(trigger, AFTER, 20) == expected


def test_a_daily_calendar_interval_runs_on_the_day_of_a_gap() -> None:
    """APScheduler skips the day whose time falls in the spring gap; cronstream runs at the
    end of the gap, as for a cron job."""
    trigger = CalendarIntervalTrigger(
        days=1, hour=2, minute=30, start_date="2026-03-21", timezone=BERLIN
    )
    assert _difference(trigger, datetime(2026, 3, 20, tzinfo=UTC)) == (
        [],
        ["2026-03-29T01:00:00+00:00"],
    )
    with pytest.raises(Unconvertible, match="only one day, week, month or year"):
        spec_parts(CalendarIntervalTrigger(months=2, timezone=BERLIN), NOW_MS)


def test_two_functions_never_share_a_workflow() -> None:
    jobs = [
        StoredJob("a", state(DAILY, id="a", func="x:y-z")),
        StoredJob("b", state(DAILY, id="b", func="x-y:z")),
    ]
    result = convert_jobs(jobs, NOW_MS)
    assert [s["id"] for s in result.schedules] == ["a"]
    assert result.skipped == [
        Skipped("b", "its function's workflow id 'x-y-z' is also x:y-z's"),
    ]
