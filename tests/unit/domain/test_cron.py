"""Cron parsing, error messages and the calendar (UTC, so no daylight saving)."""

from __future__ import annotations

import re

import pytest

from service.domain.cron import CronError, parse_cron
from service.domain.spec import Spec, next_fire_times
from service.domain.timeutil import parse_instant, to_rfc3339


def times(expr: str, after: str, count: int) -> list[str]:
    spec = Spec(cron=[expr])
    return [to_rfc3339(t) for t in next_fire_times(spec, parse_instant(after), count)]


def days(expr: str, after: str, count: int) -> list[str]:
    return [t[:10] for t in times(expr, after, count)]


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        (
            "0 0 L * *",
            "2024-01-15T00:00:00Z",
            ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"],
        ),
        ("0 0 L 2 *", "2023-01-01T00:00:00Z", ["2023-02-28", "2024-02-29", "2025-02-28"]),
        ("0 0 29 2 *", "2021-01-01T00:00:00Z", ["2024-02-29", "2028-02-29", "2032-02-29"]),
        # Last weekday: Mar 31 2024 is a Sunday, Aug 31 a Saturday.
        ("0 0 LW * *", "2024-03-01T00:00:00Z", ["2024-03-29", "2024-04-30", "2024-05-31"]),
        ("0 0 LW 8 *", "2024-01-01T00:00:00Z", ["2024-08-30"]),
        # Nearest weekday: Jun 15 2024 is a Saturday, Sep 15 a Sunday.
        (
            "0 0 15W * *",
            "2024-06-01T00:00:00Z",
            ["2024-06-14", "2024-07-15", "2024-08-15", "2024-09-16"],
        ),
        # 1W never leaves the month: Jun 1 2024 (Saturday) -> Monday Jun 3.
        (
            "0 0 1W * *",
            "2024-05-15T00:00:00Z",
            ["2024-06-03", "2024-07-01", "2024-08-01", "2024-09-02"],
        ),
        # 31W: only months with a 31st; Mar 31 2024 is a Sunday, Aug 31 a Saturday.
        (
            "0 0 31W * *",
            "2024-03-01T00:00:00Z",
            ["2024-03-29", "2024-05-31", "2024-07-31", "2024-08-30"],
        ),
        ("0 0 * * 5L", "2024-01-01T00:00:00Z", ["2024-01-26", "2024-02-23", "2024-03-29"]),
        ("0 0 * * FRIL", "2024-04-01T00:00:00Z", ["2024-04-26", "2024-05-31"]),
        ("0 0 * * FRI#2", "2024-01-01T00:00:00Z", ["2024-01-12", "2024-02-09", "2024-03-08"]),
        (
            "0 0 * * 1#5",
            "2024-01-01T00:00:00Z",
            ["2024-01-29", "2024-04-29", "2024-07-29", "2024-09-30"],
        ),
        # Both day fields restricted: either matches (the 13th, or any Friday).
        (
            "0 0 13 * 5",
            "2024-09-01T00:00:00Z",
            [
                "2024-09-06",
                "2024-09-13",
                "2024-09-20",
                "2024-09-27",
                "2024-10-04",
                "2024-10-11",
                "2024-10-13",
            ],
        ),
        # A field starting with '*' makes it AND: days 1, 11, 21, 31 that are Fridays.
        ("0 0 */10 * 5", "2024-01-01T00:00:00Z", ["2024-03-01", "2024-05-31", "2024-06-21"]),
        ("0 0 * JAN,jul SUN", "2024-01-01T00:00:00Z", ["2024-01-07", "2024-01-14"]),
        ("0 0 1 * 7", "2024-01-01T00:00:00Z", ["2024-01-07", "2024-01-14", "2024-01-21"]),
        ("0 12 * * MON-SUN", "2024-01-01T00:00:00Z", ["2024-01-01", "2024-01-02"]),
        ("@yearly", "2024-05-01T00:00:00Z", ["2025-01-01", "2026-01-01"]),
        ("@annually", "2024-05-01T00:00:00Z", ["2025-01-01"]),
        ("@monthly", "2024-05-01T00:00:00Z", ["2024-06-01", "2024-07-01"]),
        ("@weekly", "2024-05-01T00:00:00Z", ["2024-05-05", "2024-05-12"]),
        ("@daily", "2024-05-01T00:00:00Z", ["2024-05-02"]),
        ("@midnight", "2024-05-01T00:00:00Z", ["2024-05-02"]),
    ],
)
def test_calendar(expr: str, after: str, expected: list[str]) -> None:
    assert days(expr, after, len(expected)) == expected


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        (
            "*/20 * * * * *",
            "2024-01-01T00:00:00Z",
            ["2024-01-01T00:00:20Z", "2024-01-01T00:00:40Z", "2024-01-01T00:01:00Z"],
        ),
        ("30 0 12 * * *", "2024-01-01T00:00:00Z", ["2024-01-01T12:00:30Z", "2024-01-02T12:00:30Z"]),
        (
            "0,30 * * * * *",
            "2024-01-01T00:00:00.500Z",
            ["2024-01-01T00:00:30Z", "2024-01-01T00:01:00Z"],
        ),
        (
            "5/20 * * * *",
            "2024-01-01T00:00:00Z",
            [
                "2024-01-01T00:05:00Z",
                "2024-01-01T00:25:00Z",
                "2024-01-01T00:45:00Z",
                "2024-01-01T01:05:00Z",
            ],
        ),
        (
            "10-20/5 1 * * *",
            "2024-01-01T00:00:00Z",
            [
                "2024-01-01T01:10:00Z",
                "2024-01-01T01:15:00Z",
                "2024-01-01T01:20:00Z",
                "2024-01-02T01:10:00Z",
            ],
        ),
        ("59 23 31 12 *", "2024-12-31T23:59:00Z", ["2025-12-31T23:59:00Z"]),
        ("@hourly", "2024-01-01T00:59:59.999Z", ["2024-01-01T01:00:00Z"]),
    ],
)
def test_times(expr: str, after: str, expected: list[str]) -> None:
    assert times(expr, after, len(expected)) == expected


def test_fire_times_are_strictly_after_the_instant() -> None:
    assert times("0 0 * * *", "2024-01-01T00:00:00Z", 1) == ["2024-01-02T00:00:00Z"]
    assert times("0 0 * * *", "2023-12-31T23:59:59.999Z", 1) == ["2024-01-01T00:00:00Z"]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "minute field: 61 is out of range 0-59"),
        ("0 24 * * *", "hour field: 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("0 0 32 * *", "day-of-month field: 32 is out of range 1-31"),
        ("0 0 * 13 *", "month field: 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field: 8 is out of range 0-7"),
        ("60 0 0 * * *", "second field: 60 is out of range 0-59"),
        ("0 0 * FOO *", "month field: 'FOO' is not a number or a name"),
        ("x * * * *", "minute field: 'x' is not a number"),
        ("*/0 * * * *", "minute field: step in '*/0' must be a whole number >= 1"),
        ("30-10 * * * *", "minute field: range '30-10' goes from high to low"),
        ("1,,2 * * * *", "minute field: empty item in '1,,2'"),
        ("0 0 * * 1#6", "day-of-week field: '1#6' needs #1 to #5 after the day"),
        ("0 0 32W * *", "day-of-month field: 32 is out of range 1-31"),
        ("* * * *", "expected 5 fields"),
        ("* * * * * * *", "got 7"),
        ("@reboot", "unknown macro '@reboot'"),
        ("0 0 30 2 *", "can never fire"),
        ("0 0 31 4,6,9,11 *", "can never fire"),
    ],
)
def test_errors(expr: str, message: str) -> None:
    with pytest.raises(CronError, match=re.escape(message)):
        parse_cron(expr)


def test_an_error_is_a_value_error() -> None:
    assert issubclass(CronError, ValueError)


def test_rare_but_possible_days_are_accepted() -> None:
    # A fifth Monday in February happens only in leap years starting on a Monday.
    assert days("0 0 * 2 MON#5", "2024-01-01T00:00:00Z", 2) == ["2044-02-29", "2072-02-29"]


@pytest.mark.parametrize(
    ("expr", "fixed"),
    [
        ("30 2 * * *", True),
        ("0 9-17 * * *", True),
        ("0 1,13 * * *", True),
        ("*/15 * * * *", False),
        ("30 * * * *", False),
        ("* 2 * * *", False),
        ("0 */2 * * *", False),
        ("@hourly", False),
        ("@daily", True),
        ("0 30 2 * * *", True),
        ("*/10 30 2 * * *", True),
        ("0 * 2 * * *", False),
    ],
)
def test_fixed_time_classification(expr: str, fixed: bool) -> None:
    assert parse_cron(expr).fixed_time is fixed


def test_five_field_expressions_match_whole_minutes() -> None:
    assert parse_cron("0 2 * * *").matches((2024, 1, 1, 2, 0, 59))
    assert not parse_cron("0 0 2 * * *").matches((2024, 1, 1, 2, 0, 59))
    assert parse_cron("59 0 2 * * *").matches((2024, 1, 1, 2, 0, 59))
