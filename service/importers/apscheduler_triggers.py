"""APScheduler 3 triggers as cronstream spec fields.

``CronTrigger`` becomes a cron expression in the trigger's zone (see
``apscheduler_cron``); ``IntervalTrigger`` an interval whose offset from the epoch is
its start date's; ``DateTrigger`` a one-off: a UTC cron expression of that second (or
a day-long interval at that millisecond) bounded to that instant. ``OrTrigger`` is a
union, which a spec is; ``AndTrigger`` keeps one trigger's times and turns the others
into exclusions. Instants are epoch milliseconds; sub-millisecond parts are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from service.domain.timeutil import format_duration, to_rfc3339
from service.importers.apscheduler_cron import (
    WEEKDAYS,
    Unconvertible,
    cron_parts,
    filter_exclusions,
)

try:  # APScheduler 3.11 and later
    from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
except ImportError:  # APScheduler 3.10 has none
    CalendarIntervalTrigger = None

_DAY_MS = 86_400_000


@dataclass
class SpecParts:
    """A spec being built, with what a combination needs to know about its parts."""

    cron: list[str] = field(default_factory=list)
    intervals: list[tuple[int, int]] = field(default_factory=list)  # (every, offset) ms
    exclude: list[str] = field(default_factory=list)
    zone: str | None = None  # None: no wall-clock part, any zone gives the same times
    jitter_ms: int = 0
    start_ms: int | None = None
    end_ms: int | None = None
    one_off: bool = False
    notes: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        """The spec as a client writes it (RFC 3339 instants, durations as text)."""
        spec: dict[str, Any] = {}
        if self.cron:
            spec["cron"] = list(self.cron)
        if self.intervals:
            spec["intervals"] = [_interval_body(e, o) for e, o in self.intervals]
        if self.exclude:
            spec["exclude_cron"] = list(dict.fromkeys(self.exclude))
        spec["timezone"] = self.zone or "UTC"
        if self.jitter_ms:
            spec["jitter"] = format_duration(self.jitter_ms)
        if self.start_ms is not None:
            spec["start_at"] = to_rfc3339(self.start_ms)
        if self.end_ms is not None:
            spec["end_at"] = to_rfc3339(self.end_ms)
        return spec


def _interval_body(every: int, offset: int) -> dict[str, str]:
    out = {"every": format_duration(every)}
    if offset:
        out["offset"] = format_duration(offset)
    return out


def zone_name(tz: tzinfo | None) -> str:
    """The IANA name of an APScheduler trigger's zone (a fixed whole-hour offset is an
    ``Etc/GMT`` zone, whose sign is the other way round)."""
    key = getattr(tz, "key", None) or getattr(tz, "zone", None)
    if isinstance(key, str):
        try:
            ZoneInfo(key)
            return "UTC" if key in ("Etc/UTC", "UTC", "Etc/Zulu") else key
        except (ZoneInfoNotFoundError, ValueError):
            raise Unconvertible(f"time zone {key!r} is not in the IANA database") from None
    offset = tz.utcoffset(None) if isinstance(tz, timezone) else None
    if offset is not None and offset % timedelta(hours=1) == timedelta(0):
        hours = int(offset / timedelta(hours=1))
        return "UTC" if hours == 0 else f"Etc/GMT{-hours:+d}"
    raise Unconvertible(f"time zone {tz!r} has no IANA name")


def _ms(value: datetime | None) -> int | None:
    if value is None:
        return None
    return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _jitter(trigger: Any) -> int:
    return int((getattr(trigger, "jitter", None) or 0) * 1000)


def _later(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _earlier(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _cron(trigger: CronTrigger) -> SpecParts:
    zone = zone_name(trigger.timezone)
    parts = cron_parts(trigger, ZoneInfo(zone))
    return SpecParts(
        cron=[parts.cron],
        exclude=parts.exclude,
        zone=zone,
        jitter_ms=_jitter(trigger),
        start_ms=_later(_ms(trigger.start_date), parts.start_ms),
        end_ms=_earlier(_ms(trigger.end_date), parts.end_ms),
    )


def _interval(trigger: IntervalTrigger) -> SpecParts:
    every, rest = divmod(trigger.interval, timedelta(milliseconds=1))
    if rest or every < 1000:
        raise Unconvertible(
            f"interval {trigger.interval}: cronstream's intervals are whole milliseconds, "
            "at least 1s"
        )
    start = _ms(trigger.start_date)
    assert start is not None  # APScheduler always sets it (now + interval by default)
    return SpecParts(
        intervals=[(every, start % every)],
        jitter_ms=_jitter(trigger),
        start_ms=start,
        end_ms=_ms(trigger.end_date),
    )


def _date(trigger: DateTrigger) -> SpecParts:
    at = _ms(trigger.run_date)
    assert at is not None
    utc = datetime.fromtimestamp(at / 1000, UTC)
    parts = SpecParts(start_ms=at, end_ms=at + 1, one_off=True)
    if at % 1000:
        parts.intervals = [(_DAY_MS, at % _DAY_MS)]
    else:
        parts.cron = [f"{utc.second} {utc.minute} {utc.hour} {utc.day} {utc.month} *"]
    return parts


def _calendar(trigger: Any) -> SpecParts:
    """Every day, week, month or year at a wall-clock time, from the start date's weekday,
    day or day and month: a cron expression (longer calendar intervals have none)."""
    state = trigger.__getstate__()
    years, months, weeks, days = state["interval"]
    if sorted((years, months, weeks, days)) != [0, 0, 0, 1]:
        raise Unconvertible(
            f"a calendar interval of {years} years, {months} months, {weeks} weeks and "
            f"{days} days: only one day, week, month or year is a cron expression"
        )
    start, end = state["start_date"], state["end_date"]
    hour, minute, second = state["time"]
    dom, month, dow = "*", "*", "*"
    if weeks:
        dow = WEEKDAYS[start.weekday()]
    elif months or years:
        dom = str(start.day)
        month = str(start.month) if years else "*"
    clock = f"{minute} {hour}" if second == 0 else f"{second} {minute} {hour}"
    zone = zone_name(trigger.timezone)
    after_end = (
        None if end is None else _ms(datetime.combine(end + timedelta(1), time(), ZoneInfo(zone)))
    )
    return SpecParts(
        cron=[f"{clock} {dom} {month} {dow}"],
        zone=zone,
        jitter_ms=_jitter(trigger),
        start_ms=_ms(datetime.combine(start, time(), ZoneInfo(zone))),
        end_ms=None if after_end is None else after_end - 1,
    )


def spec_parts(trigger: Any, now_ms: int) -> SpecParts:
    """The spec of ``trigger``; raises ``Unconvertible`` with the reason when there is none."""
    if isinstance(trigger, CronTrigger):
        return _cron(trigger)
    if isinstance(trigger, IntervalTrigger):
        return _interval(trigger)
    if isinstance(trigger, DateTrigger):
        return _date(trigger)
    if CalendarIntervalTrigger is not None and isinstance(trigger, CalendarIntervalTrigger):
        return _calendar(trigger)
    if isinstance(trigger, OrTrigger):
        return _union(trigger, now_ms)
    if isinstance(trigger, AndTrigger):
        return _intersection(trigger)
    raise Unconvertible(f"{type(trigger).__name__} is not converted")


def _one_zone(parts: list[SpecParts]) -> str | None:
    zones = {p.zone for p in parts if p.zone is not None}
    if len(zones) > 1:
        raise Unconvertible(
            f"its triggers read the clock in different time zones ({', '.join(sorted(zones))}); "
            "a spec has one"
        )
    return zones.pop() if zones else None


def _union(trigger: OrTrigger, now_ms: int) -> SpecParts:
    parts = [spec_parts(t, now_ms) for t in trigger.triggers]
    if any(p.one_off for p in parts):
        raise Unconvertible("a run date combined with other triggers: a spec has no one-off times")
    if len(parts) > 1 and any(p.exclude for p in parts):
        raise Unconvertible(
            "a trigger restricted to both days of the month and weekdays, combined with others: "
            "its weekday exclusion would remove the others' times too"
        )
    # a start already past bounds nothing any more, so parts started at different times agree
    starts = {p.start_ms for p in parts if p.start_ms is not None and p.start_ms > now_ms}
    ends = {p.end_ms for p in parts}
    if len(starts) > 1 or (starts and any(p.start_ms is None for p in parts)) or len(ends) > 1:
        raise Unconvertible("its triggers start or end at different dates; a spec has one of each")
    notes = [n for p in parts for n in p.notes]
    if any(isinstance(t, IntervalTrigger) for t in trigger.triggers):
        notes.append(
            "APScheduler 3 restarts an interval inside an OrTrigger from every time of the "
            "combination; here each interval keeps its own phase"
        )
    return SpecParts(
        cron=[c for p in parts for c in p.cron],
        intervals=[i for p in parts for i in p.intervals],
        exclude=[e for p in parts for e in p.exclude],
        zone=_one_zone(parts),
        jitter_ms=max([_jitter(trigger)] + [p.jitter_ms for p in parts]),
        start_ms=starts.pop() if starts else None,
        end_ms=ends.pop(),
        notes=notes,
    )


def _intersection(trigger: AndTrigger) -> SpecParts:
    triggers = list(trigger.triggers)
    if not all(isinstance(t, CronTrigger | IntervalTrigger) for t in triggers):
        raise Unconvertible("only cron and interval triggers can be combined with AND")
    bases = [t for t in triggers if isinstance(t, IntervalTrigger)] or triggers[:1]
    if len(bases) > 1:
        raise Unconvertible("two interval triggers combined with AND are not converted")
    base = bases[0]
    out = _interval(base) if isinstance(base, IntervalTrigger) else _cron(base)
    zones = [out.zone] if out.zone else []
    for other in triggers:
        if other is base:
            continue
        zone = zone_name(other.timezone)
        zones.append(zone)
        fence = filter_exclusions(other, ZoneInfo(zone))
        out.exclude += fence.exclude
        out.start_ms = _later(_later(out.start_ms, _ms(other.start_date)), fence.start_ms)
        out.end_ms = _earlier(_earlier(out.end_ms, _ms(other.end_date)), fence.end_ms)
    out.zone = _one_zone([SpecParts(zone=z) for z in zones])
    out.jitter_ms = _jitter(trigger)
    out.notes.append(
        "APScheduler 3's AndTrigger finds its first time and then loops without end; "
        "here it fires at every time all of its triggers match"
    )
    return out
