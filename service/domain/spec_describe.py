"""Plain-English readings of cron expressions and intervals ("At 02:30, every day")."""

from __future__ import annotations

import calendar
from collections.abc import Iterable

from service.domain.cron import CronExpr

_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_ORDINALS = ("first", "second", "third", "fourth", "fifth")
_UNITS = ((86_400_000, "day"), (3_600_000, "hour"), (60_000, "minute"), (1000, "second"))


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _runs(values: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted values: [0, 1, 2, 5] -> [(0, 2), (5, 5)]."""
    out: list[tuple[int, int]] = []
    for value in sorted(values):
        if out and value == out[-1][1] + 1:
            out[-1] = (out[-1][0], value)
        else:
            out.append((value, value))
    return out


def _named(values: Iterable[int], name: tuple[str, ...] | list[str]) -> str:
    parts = []
    for lo, hi in _runs(values):
        if lo == hi:
            parts.append(name[lo])
        elif hi == lo + 1:
            parts += [name[lo], name[hi]]
        else:
            parts.append(f"{name[lo]} through {name[hi]}")
    return _join(parts)


def _numbers(values: Iterable[int]) -> str:
    return _named(values, [str(v) for v in range(61)])


def _step(values: tuple[int, ...], lo: int, hi: int) -> int | None:
    """n when ``values`` are exactly lo, lo+n, lo+2n, ... up to hi (n > 1)."""
    if len(values) < 2 or values[0] != lo:
        return None
    step = values[1] - values[0]
    if step > 1 and values == tuple(range(lo, hi + 1, step)):
        return step
    return None


def _every(count: int, unit: str) -> str:
    return f"Every {unit}" if count == 1 else f"Every {count} {unit}s"


def _clock(hour: int, minute: int, second: int) -> str:
    return f"{hour:02d}:{minute:02d}" + (f":{second:02d}" if second else "")


def _time(expr: CronExpr) -> tuple[str, bool]:
    """The time-of-day part, and whether it names times of day (``At 02:30``)."""
    seconds, minutes, hours = expr.seconds, expr.minutes, expr.hours
    all_seconds, all_minutes, all_hours = len(seconds) == 60, len(minutes) == 60, len(hours) == 24
    second_step, minute_step = _step(seconds, 0, 59), _step(minutes, 0, 59)
    hour_step = _step(hours, 0, 23)
    on_minute = seconds == (0,)
    if all_hours and all_minutes:
        if all_seconds:
            return "Every second", False
        if second_step:
            return _every(second_step, "second"), False
        if on_minute:
            return "Every minute", False
        return f"At second {_numbers(seconds)} of every minute", False
    if all_hours and on_minute:
        if minute_step:
            return _every(minute_step, "minute"), False
        if minutes == (0,):
            return "Every hour", False
        return f"At minute {_numbers(minutes)} of every hour", False
    if hour_step and on_minute and minutes == (0,):
        return _every(hour_step, "hour"), False
    if len(seconds) * len(minutes) * len(hours) <= 4:
        times = [_clock(h, m, s) for h in hours for m in minutes for s in seconds]
        return f"At {_join(times)}", True
    hour_runs = _runs(hours)
    if on_minute and len(hour_runs) == 1:
        lo, hi = hour_runs[0]
        within = f"from {lo:02d}:00 through {hi:02d}:59"
        if all_minutes:
            return f"Every minute {within}", False
        if minute_step:
            return f"{_every(minute_step, 'minute')} {within}", False
        return f"At minute {_numbers(minutes)} of every hour {within}", False
    text = f"At minute {_numbers(minutes)} past hour {_numbers(hours)}"
    if not on_minute:
        text = f"At second {_numbers(seconds)} of minute {_numbers(minutes)} past hour " + (
            _numbers(hours)
        )
    return text, False


def _ordinal_day(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _days_of_month(expr: CronExpr) -> list[str]:
    rule = expr.day_rule
    parts = []
    if rule.dom and len(rule.dom) < 31:
        days = [_ordinal_day(d) for d in sorted(rule.dom)]
        parts.append(f"on the {_join(days)}")
    if rule.last:
        parts.append("on the last day of the month")
    if rule.last_weekday:
        parts.append("on the last weekday of the month")
    for day in sorted(rule.nearest_weekday):
        parts.append(f"on the weekday nearest the {_ordinal_day(day)}")
    return parts


def _days_of_week(expr: CronExpr) -> list[str]:
    rule = expr.day_rule
    parts = []
    if rule.dow and len(rule.dow) < 7:
        parts.append(f"on {_named(rule.dow, _WEEKDAYS)}")
    for day in sorted(rule.dow_last):
        parts.append(f"on the last {_WEEKDAYS[day]} of the month")
    for day, nth in sorted(rule.dow_nth, key=lambda p: (p[1], p[0])):
        parts.append(f"on the {_ORDINALS[nth - 1]} {_WEEKDAYS[day]} of the month")
    return parts


def _date(expr: CronExpr) -> str:
    by_month, by_week = _days_of_month(expr), _days_of_week(expr)
    glue = " and " if expr.day_rule.both else " or "
    days = glue.join(p for p in (_join(by_month), _join(by_week)) if p)
    months = ""
    if len(expr.months) < 12:
        months = f"in {_named(expr.months, list(calendar.month_name))}"
    return " ".join(p for p in (days, months) if p)


def describe_cron(expr: CronExpr) -> str:
    """``At 02:30, every day``; ``Every 15 minutes``; ``At 09:00, on Monday through Friday``."""
    time, at_times = _time(expr)
    date = _date(expr)
    if date:
        return f"{time}, {date}"
    return f"{time}, every day" if at_times else time


def describe_interval(every_ms: int, offset_ms: int = 0) -> str:
    """``Every 90 seconds``; ``Every 15 minutes, offset by 5 minutes``."""
    text = _every(*_amount(every_ms))
    if offset_ms:
        count, unit = _amount(offset_ms)
        text += f", offset by {count} {unit}{'s' if count != 1 else ''}"
    return text


def _amount(ms: int) -> tuple[int, str]:
    for size, unit in _UNITS:
        if ms % size == 0:
            return ms // size, unit
    return ms, "millisecond"
