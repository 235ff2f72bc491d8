"""Cron expressions: parsing with field-level errors, and matching on a wall clock.

A ``CronExpr`` knows nothing about time zones. It answers "which wall-clock second
comes next" on the proleptic Gregorian calendar; ``service.domain.cron_tz`` turns
wall-clock times into instants with the daylight-saving rules.

Syntax: five fields (minute hour day-of-month month day-of-week) or six with
seconds first; ``*``, lists, ranges, steps (``*/15``, ``5/10``, ``1-30/2``);
month and weekday names (``JAN``, ``MON``); ``L`` (last day of the month), ``LW``
(last weekday of the month) and ``15W`` (weekday nearest the 15th) in
day-of-month; ``5L`` (last Friday) and ``MON#2`` (second Monday) in day-of-week;
weekday ``7`` is Sunday, as is ``0``; and the macros ``@yearly @annually @monthly
@weekly @daily @midnight @hourly``. When both day fields are restricted a day
matches if either does; when either starts with ``*`` both must match (Vixie
cron's rule).
"""

from __future__ import annotations

import calendar
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

Wall = tuple[int, int, int, int, int, int]
"""A wall-clock time to the second: (year, month, day, hour, minute, second)."""

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = {name: i + 1 for i, name in enumerate(calendar.month_abbr[1:])}
_DAY_NAMES = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}

# The calendar repeats every 400 years, so an expression with no day in the next
# 400 years has none ever. Year 9998 keeps every computation inside datetime's range.
_CYCLE_YEARS = 400
_LAST_YEAR = 9998
_DAYS_CACHE_SIZE = 4096


class CronError(ValueError):
    """A cron expression that cannot be read or can never fire."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    lo: int
    hi: int
    names: dict[str, int]


SECOND = _Field("second", 0, 59, {})
MINUTE = _Field("minute", 0, 59, {})
HOUR = _Field("hour", 0, 23, {})
DAY_OF_MONTH = _Field("day-of-month", 1, 31, {})
MONTH = _Field("month", 1, 12, {k.upper(): v for k, v in _MONTH_NAMES.items()})
DAY_OF_WEEK = _Field("day-of-week", 0, 7, _DAY_NAMES)


def _number(token: str, field: _Field) -> int:
    upper = token.upper()
    if upper in field.names:
        return field.names[upper]
    if not (token.isascii() and token.isdigit()):
        kind = "a number or a name" if field.names else "a number"
        raise CronError(f"{field.name} field: {token!r} is not {kind}")
    value = int(token)
    if not field.lo <= value <= field.hi:
        raise CronError(f"{field.name} field: {value} is out of range {field.lo}-{field.hi}")
    return value


def _item(item: str, field: _Field) -> set[int]:
    """One comma-separated item: ``*``, ``a``, ``a-b``, each with an optional ``/step``."""
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
            raise CronError(f"{field.name} field: step in {item!r} must be a whole number >= 1")
        step = int(step_text)
    if base == "*":
        lo, hi = field.lo, field.hi
    elif "-" in base:
        first, _, last = base.partition("-")
        lo, hi = _number(first, field), _number(last, field)
        if field is DAY_OF_WEEK and hi == 0 and lo > 0:
            hi = 7  # MON-SUN
        if lo > hi:
            raise CronError(f"{field.name} field: range {base!r} goes from high to low")
    else:
        lo = _number(base, field)
        hi = field.hi if slash else lo
    return set(range(lo, hi + 1, step))


def _plain(text: str, field: _Field) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{field.name} field: empty item in {text!r}")
        values |= _item(item, field)
    return values


@dataclass(frozen=True, slots=True)
class DayRule:
    dom: frozenset[int]
    last: bool  # L
    last_weekday: bool  # LW
    nearest_weekday: frozenset[int]  # 15W
    dow: frozenset[int]  # 0 = Sunday
    dow_last: frozenset[int]  # 5L
    dow_nth: frozenset[tuple[int, int]]  # 1#2
    both: bool  # Vixie: AND when either field starts with '*', else OR
    every_day: bool


def _day_of_month(text: str) -> tuple[set[int], bool, bool, set[int]]:
    days: set[int] = set()
    last = last_weekday = False
    nearest: set[int] = set()
    for item in text.split(","):
        upper = item.upper()
        if upper == "L":
            last = True
        elif upper == "LW":
            last_weekday = True
        elif upper.endswith("W") and "/" not in upper and "-" not in upper:
            nearest.add(_number(item[:-1], DAY_OF_MONTH))
        else:
            days |= _plain(item, DAY_OF_MONTH)
    return days, last, last_weekday, nearest


def _weekday(token: str) -> int:
    return _number(token, DAY_OF_WEEK) % 7


def _day_of_week(text: str) -> tuple[set[int], set[int], set[tuple[int, int]]]:
    days: set[int] = set()
    last: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for item in text.split(","):
        if "#" in item:
            day, _, which = item.partition("#")
            if which not in {"1", "2", "3", "4", "5"}:
                raise CronError(f"day-of-week field: {item!r} needs #1 to #5 after the day")
            nth.add((_weekday(day), int(which)))
        elif len(item) > 1 and item.upper().endswith("L"):
            last.add(_weekday(item[:-1]))
        else:
            days |= {d % 7 for d in _plain(item, DAY_OF_WEEK)}
    return days, last, nth


def _day_rule(dom_text: str, dow_text: str) -> DayRule:
    dom, last, last_weekday, nearest = _day_of_month(dom_text)
    dow, dow_last, dow_nth = _day_of_week(dow_text)
    both = dom_text.startswith("*") or dow_text.startswith("*")
    every_day = both and len(dom) == 31 and len(dow) == 7
    return DayRule(
        frozenset(dom),
        last,
        last_weekday,
        frozenset(nearest),
        frozenset(dow),
        frozenset(dow_last),
        frozenset(dow_nth),
        both,
        every_day,
    )


def _nearest_weekday(day: int, first_weekday: int, length: int) -> int:
    """The weekday nearest ``day`` without leaving the month (``first_weekday``: Monday=0)."""
    weekday = (first_weekday + day - 1) % 7
    if weekday == 5:  # Saturday: the Friday before, or the Monday after on the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: the Monday after, or the Friday before on the last day
        return day + 1 if day < length else day - 2
    return day


def _month_days(rule: DayRule, year: int, month: int) -> tuple[int, ...]:
    first_weekday, length = calendar.monthrange(year, month)
    if rule.every_day:
        return tuple(range(1, length + 1))
    by_month = {d for d in rule.dom if d <= length}
    if rule.last:
        by_month.add(length)
    if rule.last_weekday:
        by_month.add(_nearest_weekday(length, first_weekday, length))
    by_month |= {
        _nearest_weekday(d, first_weekday, length) for d in rule.nearest_weekday if d <= length
    }
    by_week = set()
    for day in range(1, length + 1):
        weekday = (first_weekday + day) % 7  # Sunday = 0
        if (
            weekday in rule.dow
            or (weekday in rule.dow_last and day + 7 > length)
            or (weekday, (day - 1) // 7 + 1) in rule.dow_nth
        ):
            by_week.add(day)
    days = by_month & by_week if rule.both else by_month | by_week
    return tuple(sorted(days))


class CronExpr:
    """A parsed cron expression: the wall-clock times it names."""

    __slots__ = (
        "_days",
        "day_rule",
        "fields",
        "fixed_time",
        "has_seconds",
        "hours",
        "minutes",
        "months",
        "seconds",
        "source",
    )

    def __init__(self, source: str, fields: tuple[str, ...], has_seconds: bool) -> None:
        second, minute, hour, dom, month, dow = fields
        self.source = source
        self.fields = fields
        self.has_seconds = has_seconds
        # Vixie cron: a job whose minute and hour fields are both fixed runs at a time
        # of day; the seconds field does not change that.
        self.fixed_time = not (minute.startswith("*") or hour.startswith("*"))
        self.seconds = tuple(sorted(_plain(second, SECOND)))
        self.minutes = tuple(sorted(_plain(minute, MINUTE)))
        self.hours = tuple(sorted(_plain(hour, HOUR)))
        self.months = frozenset(_plain(month, MONTH))
        self.day_rule = _day_rule(dom, dow)
        self._days: dict[tuple[int, int], tuple[tuple[int, ...], frozenset[int]]] = {}

    def __repr__(self) -> str:
        return f"CronExpr({self.source!r})"

    def days(self, year: int, month: int) -> tuple[tuple[int, ...], frozenset[int]]:
        """The days of ``month`` the expression names, sorted and as a set."""
        key = (year, month)
        found = self._days.get(key)
        if found is None:
            if len(self._days) >= _DAYS_CACHE_SIZE:
                self._days.clear()
            days = _month_days(self.day_rule, year, month)
            found = self._days[key] = (days, frozenset(days))
        return found

    def matches(self, wall: Wall) -> bool:
        """Whether ``wall`` falls on a named time; a five-field expression names whole minutes."""
        year, month, day, hour, minute, second = wall
        return (
            month in self.months
            and hour in self.hours
            and minute in self.minutes
            and (not self.has_seconds or second in self.seconds)
            and day in self.days(year, month)[1]
        )

    def block_ends(self, wall: Wall) -> list[Wall]:
        """If every second from ``wall`` to the end of its day, hour or minute matches, the
        starts of the next such units, largest first (none if ``wall``'s minute is not whole).
        """
        if (self.has_seconds and len(self.seconds) < 60) or not self.matches(wall):
            return []
        year, month, day, hour, minute, _ = wall
        start = datetime(year, month, day, hour, minute)
        ends = [start + timedelta(minutes=1)]
        if len(self.minutes) == 60:
            ends.insert(0, start.replace(minute=0) + timedelta(hours=1))
            if len(self.hours) == 24:
                ends.insert(0, start.replace(hour=0, minute=0) + timedelta(days=1))
        return [(e.year, e.month, e.day, e.hour, e.minute, e.second) for e in ends]

    def next_after(self, wall: Wall) -> Wall | None:
        """The first named wall-clock time strictly after ``wall``, or None."""
        year, month, day, hour, minute, second = wall
        if month in self.months and day in self.days(year, month)[1]:
            time = self._time_from(hour, minute, second + 1)
            if time is not None:
                return (year, month, day, *time)
        date = self._day_after(year, month, day)
        if date is None:
            return None
        return (*date, self.hours[0], self.minutes[0], self.seconds[0])

    def next_from(self, wall: Wall) -> Wall | None:
        """The first named wall-clock time at or after ``wall``, or None."""
        return self.next_after(_shift(wall, -1))

    def _time_from(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        i = bisect_left(hours, hour)
        if i < len(hours) and hours[i] == hour:
            j = bisect_left(minutes, minute)
            if j < len(minutes) and minutes[j] == minute:
                k = bisect_left(seconds, second)
                if k < len(seconds):
                    return hour, minute, seconds[k]
                j += 1
            if j < len(minutes):
                return hour, minutes[j], seconds[0]
            i += 1
        if i < len(hours):
            return hours[i], minutes[0], seconds[0]
        return None

    def _day_after(self, year: int, month: int, day: int) -> tuple[int, int, int] | None:
        horizon = min(year + _CYCLE_YEARS, _LAST_YEAR)
        while year <= horizon:
            if month in self.months:
                days = self.days(year, month)[0]
                i = bisect_right(days, day)
                if i < len(days):
                    return year, month, days[i]
            day = 0
            month += 1
            if month == 13:
                year, month = year + 1, 1
        return None


def _shift(wall: Wall, seconds: int) -> Wall:
    moved = datetime(*wall) + timedelta(seconds=seconds)
    return (moved.year, moved.month, moved.day, moved.hour, moved.minute, moved.second)


def split_fields(text: str) -> tuple[tuple[str, ...], bool]:
    """The six fields of ``text`` (seconds first, ``0`` when omitted) and whether it had six."""
    raw = text.strip()
    if raw.startswith("@"):
        macro = MACROS.get(raw.lower())
        if macro is None:
            known = ", ".join(MACROS)
            raise CronError(f"unknown macro {raw!r}: use one of {known}")
        raw = macro
    parts = raw.split()
    if len(parts) == 5:
        return ("0", *parts), False
    if len(parts) == 6:
        return tuple(parts), True
    raise CronError(
        f"expected 5 fields (minute hour day-of-month month day-of-week) "
        f"or 6 with seconds first, got {len(parts)}"
    )


@lru_cache(maxsize=1024)
def parse_cron(text: str) -> CronExpr:
    """Parse ``text``; raise CronError naming the field at fault, or if it can never fire."""
    fields, has_seconds = split_fields(text)
    expr = CronExpr(text, fields, has_seconds)
    if expr._day_after(2000, 1, 0) is None:
        raise CronError("can never fire: no date matches its day and month fields")
    return expr
