"""The spec model: validation, union, exclusions, bounds, max_actions, jitter, preview."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.domain.spec import (
    PreviewRequest,
    Spec,
    SpecPreview,
    describe,
    iter_fire_times,
    jittered_time,
    next_fire_after,
    next_fire_times,
    preview,
    remaining_times,
)
from service.domain.timeutil import parse_instant, to_rfc3339


def rendered(values: list[int]) -> list[str]:
    return [to_rfc3339(v) for v in values]


def only_error(body: dict[str, Any]) -> tuple[tuple[int | str, ...], str]:
    with pytest.raises(ValidationError) as caught:
        Spec.model_validate(body)
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    return errors[0]["loc"], errors[0]["msg"].removeprefix("Value error, ")


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        ({"cron": ["61 * * * *"]}, ("cron", 0), "minute field: 61 is out of range 0-59"),
        (
            {"cron": ["0 2 * * *", "0 0 30 2 *"]},
            ("cron", 1),
            "can never fire: no date matches its day and month fields",
        ),
        (
            {"cron": ["0 2 * * *"], "exclude_cron": ["0 25 * * *"]},
            ("exclude_cron", 0),
            "hour field: 25 is out of range 0-23",
        ),
        (
            {"cron": ["0 2 * * *"], "timezone": "Mars/Olympus"},
            ("timezone",),
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            {"cron": ["0 2 * * *"], "timezone": "America"},
            ("timezone",),
            "unknown time zone 'America'",
        ),
        (
            {"cron": ["0 2 * * *"], "timezone": "../etc/passwd"},
            ("timezone",),
            "unknown time zone '../etc/passwd'",
        ),
        (
            {"intervals": [{"every": "15m", "offset": "15m"}]},
            ("intervals", 0, "offset"),
            "offset must be smaller than every",
        ),
        (
            {"intervals": [{"every": "500ms"}]},
            ("intervals", 0, "every"),
            "every must be at least 1s",
        ),
        ({}, (), "a spec needs at least one cron expression or interval"),
        (
            {
                "cron": ["0 2 * * *"],
                "start_at": "2026-02-01T00:00:00Z",
                "end_at": "2026-01-01T00:00:00Z",
            },
            ("end_at",),
            "end_at must be after start_at",
        ),
        (
            {
                "cron": ["0 2 * * *"],
                "start_at": "2026-01-01T00:00:00Z",
                "end_at": "2026-01-01T00:00:00Z",
            },
            ("end_at",),
            "end_at must be after start_at",
        ),
    ],
)
def test_validation_names_the_field(
    body: dict[str, Any], loc: tuple[Any, ...], message: str
) -> None:
    assert only_error(body) == (loc, message)


def test_unknown_fields_are_rejected() -> None:
    loc, _ = only_error({"cron": ["0 2 * * *"], "tz": "UTC"})
    assert loc == ("tz",)


def test_spec_round_trips_through_json() -> None:
    spec = Spec.model_validate(
        {
            "cron": ["0 2 * * *"],
            "intervals": [{"every": "90s", "offset": "30s"}],
            "exclude_cron": ["0 2 * * 0"],
            "timezone": "Europe/Berlin",
            "jitter": "5m",
            "start_at": "2026-01-01T00:00:00Z",
            "end_at": "2027-01-01T00:00:00Z",
        }
    )
    assert Spec.model_validate_json(spec.model_dump_json()) == spec


def test_union_of_cron_and_intervals_is_deduplicated() -> None:
    spec = Spec(cron=["*/30 * * * *"], intervals=[{"every": "20m"}])
    times = next_fire_times(spec, parse_instant("2024-01-01T00:00:00Z"), 5)
    assert rendered(times) == [
        "2024-01-01T00:20:00Z",
        "2024-01-01T00:30:00Z",
        "2024-01-01T00:40:00Z",
        "2024-01-01T01:00:00Z",
        "2024-01-01T01:20:00Z",
    ]


def test_intervals_count_from_the_epoch_plus_offset() -> None:
    spec = Spec(intervals=[{"every": "1h", "offset": "15m"}])
    times = next_fire_times(spec, parse_instant("2024-01-01T00:15:00Z"), 2)
    assert rendered(times) == ["2024-01-01T01:15:00Z", "2024-01-01T02:15:00Z"]
    odd = Spec(intervals=[{"every": "7s"}])
    assert next_fire_after(odd, 0) == 7000
    assert next_fire_after(odd, -1) == 0


def test_exclusions_remove_matching_times() -> None:
    spec = Spec(cron=["0 2 * * *"], exclude_cron=["0 2 * * 0"])  # not on Sundays
    times = next_fire_times(spec, parse_instant("2024-01-05T12:00:00Z"), 3)
    assert rendered(times) == [
        "2024-01-06T02:00:00Z",
        "2024-01-08T02:00:00Z",
        "2024-01-09T02:00:00Z",
    ]


def test_a_five_field_exclusion_covers_its_whole_minute() -> None:
    # 40 s intervals: 00:00:00 and 00:00:40 fall in minute 0 of the hour.
    spec = Spec(intervals=[{"every": "40s"}], exclude_cron=["0 * * * *"])
    times = next_fire_times(spec, parse_instant("2023-12-31T23:59:00Z"), 3)
    assert rendered(times) == [
        "2023-12-31T23:59:20Z",
        "2024-01-01T00:01:20Z",
        "2024-01-01T00:02:00Z",
    ]


def test_exclusions_use_the_zone_wall_clock() -> None:
    spec = Spec(cron=["0 * * * *"], exclude_cron=["0 9-17 * * MON-FRI"], timezone="Europe/Berlin")
    times = next_fire_times(spec, parse_instant("2024-01-08T07:30:00Z"), 2)  # Monday, 08:30 CET
    assert rendered(times) == ["2024-01-08T17:00:00Z", "2024-01-08T18:00:00Z"]


def test_a_fixed_time_exclusion_in_the_gap_excludes_where_that_job_would_run() -> None:
    # 02:30 does not exist on 2024-03-10 in New York; a 02:30 job would run at 03:00 EDT.
    spec = Spec(cron=["0 * * * *"], exclude_cron=["30 2 * * *"], timezone="America/New_York")
    times = next_fire_times(spec, parse_instant("2024-03-10T06:30:00Z"), 2)
    assert rendered(times) == ["2024-03-10T08:00:00Z", "2024-03-10T09:00:00Z"]


def test_an_exclusion_covers_both_passes_of_a_repeated_hour() -> None:
    spec = Spec(cron=["30 * * * *"], exclude_cron=["30 1 * * *"], timezone="America/New_York")
    times = next_fire_times(spec, parse_instant("2024-11-03T04:45:00Z"), 1)
    assert rendered(times) == ["2024-11-03T07:30:00Z"]


def test_everything_excluded_gives_no_times() -> None:
    spec = Spec(cron=["0 2 * * *"], exclude_cron=["0 2 * * *"])
    assert next_fire_after(spec, 0) is None


def test_bounds_are_inclusive() -> None:
    spec = Spec(cron=["0 * * * *"], start_at="2024-01-01T05:00:00Z", end_at="2024-01-01T08:00:00Z")
    times = list(iter_fire_times(spec, parse_instant("2024-01-01T00:00:00Z")))
    assert rendered(times) == [
        "2024-01-01T05:00:00Z",
        "2024-01-01T06:00:00Z",
        "2024-01-01T07:00:00Z",
        "2024-01-01T08:00:00Z",
    ]
    assert next_fire_after(spec, parse_instant("2024-01-01T08:00:00Z")) is None


def test_start_at_between_times() -> None:
    spec = Spec(intervals=[{"every": "1h"}], start_at="2024-01-01T05:30:00Z")
    assert rendered(next_fire_times(spec, 0, 1)) == ["2024-01-01T06:00:00Z"]


def test_max_actions_bounds_the_remaining_times() -> None:
    spec = Spec(cron=["0 * * * *"])
    after = parse_instant("2024-01-01T00:00:00Z")
    assert len(remaining_times(spec, after, 10, remaining=3)) == 3
    assert remaining_times(spec, after, 10, remaining=0) == []
    assert len(remaining_times(spec, after, 10, remaining=None)) == 10
    assert remaining_times(spec, after, 2, remaining=5) == next_fire_times(spec, after, 2)


def test_next_fire_times_with_no_count() -> None:
    assert next_fire_times(Spec(cron=["* * * * *"]), 0, 0) == []


def test_answers_are_cached_and_stable() -> None:
    spec = Spec(cron=["0 2 * * *"], timezone="Europe/Berlin")
    first = next_fire_after(spec, 1_700_000_000_000)
    again = next_fire_after(Spec(cron=["0 2 * * *"], timezone="Europe/Berlin"), 1_700_000_000_000)
    assert first == again == parse_instant("2023-11-15T01:00:00Z")


def test_a_changed_spec_is_not_served_from_the_cache() -> None:
    spec = Spec(cron=["0 2 * * *"])
    assert rendered([next_fire_after(spec, 0) or 0]) == ["1970-01-01T02:00:00Z"]
    changed = spec.model_copy(update={"timezone": "Asia/Kathmandu"})
    assert rendered([next_fire_after(changed, 0) or 0]) == ["1970-01-01T20:30:00Z"]


class TestJitter:
    spec = Spec(cron=["0 * * * *"], jitter="10m")
    nominal = parse_instant("2024-01-01T00:00:00Z")

    def test_deterministic_and_within_jitter(self) -> None:
        actual = jittered_time(self.spec, "s1", self.nominal, None)
        assert actual == jittered_time(self.spec, "s1", self.nominal, None)
        assert self.nominal <= actual < self.nominal + 600_000

    def test_depends_on_schedule_and_nominal_time(self) -> None:
        delays = {jittered_time(self.spec, f"s{i}", self.nominal, None) for i in range(20)}
        assert len(delays) > 1
        later = {
            jittered_time(self.spec, "s1", self.nominal + h * 3_600_000, None) - h * 3_600_000
            for h in range(20)
        }
        assert len(later) > 1

    def test_never_reaches_the_next_nominal_time(self) -> None:
        for i in range(200):
            actual = jittered_time(self.spec, f"s{i}", self.nominal, self.nominal + 1000)
            assert self.nominal <= actual < self.nominal + 1000

    def test_no_jitter(self) -> None:
        spec = Spec(cron=["0 * * * *"])
        assert jittered_time(spec, "s1", self.nominal, None) == self.nominal


def test_preview_lists_times_and_exclusions() -> None:
    spec = Spec(cron=["0 2 * * *"], exclude_cron=["0 2 * * 0"], jitter="1h")
    result = preview(spec, parse_instant("2024-01-05T12:00:00Z"), 3, "sched-1")
    body = result.model_dump(mode="json")
    assert [t["nominal"] for t in body["times"]] == [
        "2024-01-06T02:00:00Z",
        "2024-01-08T02:00:00Z",
        "2024-01-09T02:00:00Z",
    ]
    assert body["excluded"] == [
        {"nominal": "2024-01-07T02:00:00Z", "reason": "exclude_cron[0]: 0 2 * * 0"}
    ]
    for time in result.times:
        assert time.actual == jittered_time(
            spec, "sched-1", time.nominal, next_fire_after(spec, time.nominal)
        )
        assert time.nominal <= time.actual < time.nominal + 3_600_000
    assert SpecPreview.model_validate_json(result.model_dump_json()) == result


def test_preview_without_schedule_id_has_no_jitter() -> None:
    spec = Spec(cron=["0 2 * * *"], jitter="1h")
    result = preview(spec, 0, 2)
    assert [t.actual for t in result.times] == [t.nominal for t in result.times]


def test_preview_stops_at_end() -> None:
    spec = Spec(cron=["0 * * * *"], exclude_cron=["0 3 * * *"], end_at="1970-01-01T04:00:00Z")
    result = preview(spec, 0, 10)
    assert rendered([t.nominal for t in result.times]) == [
        "1970-01-01T01:00:00Z",
        "1970-01-01T02:00:00Z",
        "1970-01-01T04:00:00Z",
    ]
    assert rendered([e.nominal for e in result.excluded]) == ["1970-01-01T03:00:00Z"]


def test_preview_request() -> None:
    request = PreviewRequest.model_validate({"spec": {"cron": ["@daily"]}})
    assert (request.count, request.after, request.schedule_id) == (10, None, None)
    for count in (0, 1001):
        with pytest.raises(ValidationError) as caught:
            PreviewRequest.model_validate({"spec": {"cron": ["@daily"]}, "count": count})
        assert caught.value.errors()[0]["loc"] == ("count",)
    with pytest.raises(ValidationError) as caught:
        PreviewRequest.model_validate({"spec": {"cron": ["61 * * * *"]}})
    assert caught.value.errors()[0]["loc"] == ("spec", "cron", 0)
    with pytest.raises(ValidationError):
        PreviewRequest.model_validate({"spec": {"cron": ["@daily"]}, "extra": 1})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"cron": ["30 2 * * *"]}, ["At 02:30, every day"]),
        ({"cron": ["*/15 * * * *"]}, ["Every 15 minutes"]),
        ({"intervals": [{"every": "90s"}]}, ["Every 90 seconds"]),
        ({"intervals": [{"every": "1h30m"}]}, ["Every 90 minutes"]),
        ({"intervals": [{"every": "1d"}]}, ["Every day"]),
        (
            {"intervals": [{"every": "15m", "offset": "5m"}]},
            ["Every 15 minutes, offset by 5 minutes"],
        ),
        ({"cron": ["0 9 * * MON-FRI"]}, ["At 09:00, on Monday through Friday"]),
        ({"cron": ["* * * * *"]}, ["Every minute"]),
        ({"cron": ["@hourly"]}, ["Every hour"]),
        ({"cron": ["0 */6 * * *"]}, ["Every 6 hours"]),
        ({"cron": ["*/10 * * * * *"]}, ["Every 10 seconds"]),
        ({"cron": ["0 30 2 * * *"]}, ["At 02:30, every day"]),
        ({"cron": ["15 30 2 * * *"]}, ["At 02:30:15, every day"]),
        ({"cron": ["0 9,17 * * *"]}, ["At 09:00 and 17:00, every day"]),
        ({"cron": ["0 0 L * *"]}, ["At 00:00, on the last day of the month"]),
        ({"cron": ["0 0 LW * *"]}, ["At 00:00, on the last weekday of the month"]),
        ({"cron": ["0 0 15W * *"]}, ["At 00:00, on the weekday nearest the 15th"]),
        ({"cron": ["0 0 * * 5L"]}, ["At 00:00, on the last Friday of the month"]),
        ({"cron": ["15 10 * * 1#2"]}, ["At 10:15, on the second Monday of the month"]),
        ({"cron": ["0 0 13 * 5"]}, ["At 00:00, on the 13th or on Friday"]),
        ({"cron": ["0 0 1 1 *"]}, ["At 00:00, on the 1st in January"]),
        ({"cron": ["5,35 * * * *"]}, ["At minute 5 and 35 of every hour"]),
        (
            {"cron": ["*/5 9-17 * * 1-5"]},
            ["Every 5 minutes from 09:00 through 17:59, on Monday through Friday"],
        ),
        (
            {"cron": ["0 2 * * *"], "intervals": [{"every": "2h"}]},
            ["At 02:00, every day", "Every 2 hours"],
        ),
    ],
)
def test_describe(body: dict[str, Any], expected: list[str]) -> None:
    assert describe(Spec.model_validate(body)) == expected


def test_an_excluded_weekend_is_skipped_whole() -> None:
    # Every 10 seconds, not at weekends: 17 280 excluded times in a row, skipped day by day.
    spec = Spec(cron=["*/10 * * * * *"], exclude_cron=["* * * * SAT,SUN"], timezone="Europe/Berlin")
    after = parse_instant("2024-03-29T22:59:50Z")  # Friday 23:59:50 CET
    assert rendered(next_fire_times(spec, after, 2)) == [
        "2024-03-31T22:00:00Z",
        "2024-03-31T22:00:10Z",
    ]


def test_a_preview_lists_excluded_times_up_to_a_bound() -> None:
    spec = Spec(cron=["* * * * *"], exclude_cron=["* * * * SUN"])
    result = preview(spec, parse_instant("2024-01-06T23:59:00Z"), 1)  # Saturday 23:59
    assert rendered([t.nominal for t in result.times]) == ["2024-01-08T00:00:00Z"]
    assert len(result.excluded) == 1000
    assert rendered([result.excluded[0].nominal]) == ["2024-01-07T00:00:00Z"]


def test_an_excluded_day_with_a_dst_change_is_skipped_hour_by_hour() -> None:
    # Every second, not on Sundays; this Sunday has 23 hours (02:00 CET -> 03:00 CEST).
    spec = Spec(cron=["* * * * * *"], exclude_cron=["* * * * SUN"], timezone="Europe/Berlin")
    after = parse_instant("2024-03-30T22:59:59Z")  # Saturday 23:59:59 CET
    assert rendered(next_fire_times(spec, after, 2)) == [
        "2024-03-31T22:00:00Z",  # Monday 00:00 CEST
        "2024-03-31T22:00:01Z",
    ]
