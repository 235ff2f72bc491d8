"""APScheduler 3 ``CronTrigger`` fields as cronstream cron expressions.

APScheduler matches a time when every field matches (day of month *and* day of week),
numbers weekdays from Monday = 0, and has fields cron lacks (``year``, ``week``).
cronstream's cron follows Vixie cron: day of month *or* day of week when both are
restricted, Sunday = 0. So the day of week never goes into the expression as a
restriction beside a restricted day of month: it becomes an ``exclude_cron`` of the
other weekdays, which keeps APScheduler's "and". A year range becomes the spec's
bounds; anything else that cannot be said exactly raises ``Unconvertible``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.cron.expressions import (
    AllExpression,
    LastDayOfMonthExpression,
    RangeExpression,
    WeekdayPositionExpression,
)
from apscheduler.triggers.cron.fields import MAX_VALUES, MIN_VALUES

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")  # APScheduler's 0..6
POSITIONS = ("#1", "#2", "#3", "#4", "#5", "L")  # APScheduler's 1st..5th, last


class Unconvertible(ValueError):
    """A job, or part of it, that cronstream cannot express; the message says why."""


@dataclass
class CronParts:
    """One cron expression with the exclusions and bounds that make it exact."""

    cron: str
    exclude: list[str] = field(default_factory=list)
    start_ms: int | None = None
    end_ms: int | None = None


def _fields(trigger: CronTrigger) -> dict[str, list[Any]]:
    return {f.name: list(f.expressions) for f in trigger.fields}


def _is_all(exprs: list[Any]) -> bool:
    return any(type(e) is AllExpression and not e.step for e in exprs)


def values(name: str, exprs: list[Any]) -> set[int]:
    """The values a numeric field matches (not for ``day``'s weekday positions and ``L``)."""
    low, high = MIN_VALUES[name], MAX_VALUES[name]
    out: set[int] = set()
    for expr in exprs:
        if isinstance(expr, RangeExpression):
            last = high if expr.last is None else expr.last
            out.update(range(max(expr.first, low), min(last, high) + 1, expr.step or 1))
        elif type(expr) is AllExpression:
            out.update(range(low, high + 1, expr.step or 1))
        else:
            raise Unconvertible(f"{name}: {expr} has no set of values")
    return out


def _plain(expr: Any, day: bool) -> str:
    """``*``, ``*/s``, ``a``, ``a-b``, ``a-b/s``: the same meaning in both schedulers."""
    if type(expr) is AllExpression:
        if not expr.step:
            return "*"
        # a day of month written "*/s" would turn Vixie's "or" into "and"
        return f"1-31/{expr.step}" if day else f"*/{expr.step}"
    text = str(expr.first)
    if expr.last is not None and (expr.last != expr.first or expr.step):
        text += f"-{expr.last}"
    return f"{text}/{expr.step}" if expr.step else text


def _text(name: str, exprs: list[Any]) -> str:
    if _is_all(exprs):
        return "*"
    return ",".join(_plain(e, day=name == "day") for e in exprs)


def weekday_list(days: set[int]) -> str:
    """Weekdays (APScheduler numbers) as cron names, runs of three or more as ranges."""
    parts: list[str] = []
    ordered = sorted(days)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{WEEKDAYS[ordered[i]]}-{WEEKDAYS[ordered[j]]}")
        else:
            parts.extend(WEEKDAYS[d] for d in ordered[i : j + 1])
        i = j + 1
    return ",".join(parts)


def _days(exprs: list[Any]) -> tuple[str, str]:
    """The day-of-month and day-of-week cron fields for APScheduler's ``day`` field alone."""
    if _is_all(exprs):
        return "*", "*"
    dom: list[str] = []
    dow: list[str] = []
    for expr in exprs:
        if isinstance(expr, WeekdayPositionExpression):
            dow.append(WEEKDAYS[expr.weekday] + POSITIONS[expr.option_num])
        elif isinstance(expr, LastDayOfMonthExpression):
            dom.append("L")
        else:
            dom.append(_plain(expr, day=True))
    # both restricted: Vixie's "or" is what a list of days means
    return (",".join(dom) or "*"), (",".join(dow) or "*")


def _year_bounds(exprs: list[Any], zone: ZoneInfo) -> tuple[int | None, int | None]:
    if _is_all(exprs):
        return None, None
    years = sorted(values("year", exprs))
    if not years or years[-1] - years[0] + 1 != len(years):
        raise Unconvertible(
            f"year={','.join(str(e) for e in exprs)!r}: cronstream bounds a spec by one "
            "start and one end, so only a single run of years can be kept"
        )
    start = _local_ms(datetime(years[0], 1, 1), zone)
    end = None if years[-1] >= 9998 else _local_ms(datetime(years[-1] + 1, 1, 1), zone) - 1
    return start, end


def _local_ms(wall: datetime, zone: ZoneInfo) -> int:
    return int(wall.replace(tzinfo=zone).timestamp() * 1000)


def cron_parts(trigger: CronTrigger, zone: ZoneInfo) -> CronParts:
    """The expression, exclusions and year bounds that fire when ``trigger`` does."""
    f = _fields(trigger)
    if not _is_all(f["week"]):
        raise Unconvertible(
            f"week={_text('week', f['week'])!r}: cronstream's cron has no week-of-year field"
        )
    dom, dow = _days(f["day"])
    exclude: list[str] = []
    weekdays = values("day_of_week", f["day_of_week"])
    if len(weekdays) < 7:
        if dom == "*" and dow == "*":
            dow = weekday_list(weekdays)
        else:
            exclude.append(f"* * * * {weekday_list(set(range(7)) - weekdays)}")
    minute_hour = f"{_text('minute', f['minute'])} {_text('hour', f['hour'])}"
    days = f"{dom} {_text('month', f['month'])} {dow}"
    second = _text("second", f["second"])
    cron = f"{minute_hour} {days}" if second == "0" else f"{second} {minute_hour} {days}"
    start, end = _year_bounds(f["year"], zone)
    return CronParts(cron, exclude, start, end)


_COMPLEMENT_FIELDS = ("second", "minute", "hour", "month", "day_of_week")
_POSITION = {"second": 0, "minute": 1, "hour": 2, "day": 3, "month": 4, "day_of_week": 5}


def filter_exclusions(trigger: CronTrigger, zone: ZoneInfo) -> CronParts:
    """``trigger`` as a filter on another trigger's times (APScheduler's ``AndTrigger``):
    one exclusion per restricted field, of the values that field does not match."""
    f = _fields(trigger)
    if not _is_all(f["week"]):
        raise Unconvertible("week: cronstream's cron has no week-of-year field")
    out: list[str] = []
    for name in (*_COMPLEMENT_FIELDS, "day"):
        exprs = f[name]
        if _is_all(exprs):
            continue
        full = set(range(MIN_VALUES[name], MAX_VALUES[name] + 1))
        try:
            missing = full - values(name, exprs)
        except Unconvertible as exc:
            raise Unconvertible(f"a filter on {exc}: its complement is no cron field") from exc
        if missing:
            out.append(_exclusion(name, missing))
    start, end = _year_bounds(f["year"], zone)
    return CronParts("", out, start, end)


def _exclusion(name: str, missing: set[int]) -> str:
    fields = ["*"] * 6
    if name == "day_of_week":
        fields[5] = weekday_list(missing)
    else:
        fields[_POSITION[name]] = ",".join(str(v) for v in sorted(missing))
    return " ".join(fields if name == "second" else fields[1:])
