"""Cron expressions on the wall clock of an IANA time zone, with Vixie cron's DST rules.

A job is *fixed-time* when neither its minute nor its hour field starts with ``*``
(``CronExpr.fixed_time``); all others are *wildcard* jobs.

- Spring forward (a gap of wall-clock times that do not exist): a fixed-time job
  whose time falls in the gap runs once, at the first instant after the gap; a
  wildcard job skips the missing times.
- Fall back (a repeated interval of wall-clock times): a fixed-time job runs once,
  at the first occurrence; a wildcard job runs at both.

Instants are whole epoch seconds here. The zone's rules come from ``zoneinfo``:
a wall time with ``fold=0`` and ``fold=1`` gives the same instant when it is
unambiguous, two instants (earlier first) when it repeats, and the two readings
of a gap (``fold=0`` after ``fold=1``) when it does not exist.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from service.domain.cron import CronExpr, Wall


def _wall(moment: datetime) -> Wall:
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _instants(wall: Wall, zone: ZoneInfo) -> tuple[int, int]:
    """The instants of ``wall`` read with the offset before and after a transition."""
    local = datetime(*wall, tzinfo=zone)
    return int(local.timestamp()), int(local.replace(fold=1).timestamp())


def _offset(instant: int, zone: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(instant, zone).utcoffset()


def _transition(zone: ZoneInfo, lo: int, hi: int) -> int:
    """The first instant in (lo, hi] with the offset in force at ``hi`` (lo has another)."""
    target = _offset(hi, zone)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(mid, zone) == target:
            hi = mid
        else:
            lo = mid
    return hi


def next_fire(expr: CronExpr, zone: ZoneInfo, after: int) -> int | None:
    """The first instant strictly after ``after`` at which ``expr`` fires in ``zone``."""
    local = datetime.fromtimestamp(after, zone)
    wall = _wall(local)
    repeat = _second_pass(expr, zone, after, local) if not expr.fixed_time else None
    candidate = expr.next_after(wall)
    while candidate is not None:
        first, second = _instants(candidate, zone)
        if first == second:
            return _earliest(first, repeat)
        if first < second:  # a repeated wall time
            if first > after:
                return _earliest(first, repeat)
            if not expr.fixed_time and second > after:
                return _earliest(second, repeat)
            candidate = expr.next_after(candidate)
            continue
        gap_end = _transition(zone, second, first)
        if expr.fixed_time:
            return _earliest(gap_end, repeat)
        candidate = expr.next_from(_wall(datetime.fromtimestamp(gap_end, zone)))
    return repeat


def _second_pass(expr: CronExpr, zone: ZoneInfo, after: int, local: datetime) -> int | None:
    """For a wildcard job at ``after`` in the first pass of a repeated interval: the
    first time of the second pass it fires at (the walls up to ``local`` come round again).
    """
    if local.fold:
        return None
    before, later = local.utcoffset(), local.replace(fold=1).utcoffset()
    if before is None or later is None or before <= later:
        return None
    shift = int((before - later).total_seconds())
    fold_at = _transition(zone, after, after + shift)
    repeat_start = _wall(datetime.fromtimestamp(fold_at, zone))
    candidate = expr.next_from(repeat_start)
    if candidate is None or candidate > _wall(local):
        return None
    return _instants(candidate, zone)[1]


def _earliest(instant: int, other: int | None) -> int:
    return instant if other is None or instant < other else other


def fires_at(expr: CronExpr, zone: ZoneInfo, instant: int) -> bool:
    """Whether ``instant``'s wall clock in ``zone`` matches ``expr``, or it is the first
    instant after a gap holding a time of a fixed-time ``expr`` (where that job runs).
    """
    local = datetime.fromtimestamp(instant, zone)
    wall = _wall(local)
    if expr.matches(wall):
        return True
    if not expr.fixed_time:
        return False
    now, before = local.utcoffset(), _offset(instant - 1, zone)
    if now is None or before is None or now <= before:
        return False
    gap_start = _wall(local - (now - before))
    candidate = expr.next_from(gap_start)
    return candidate is not None and candidate < wall


def matched_through(expr: CronExpr, zone: ZoneInfo, instant: int) -> int:
    """The last second of the run of seconds from ``instant`` on that ``expr`` matches on
    the wall clock, as far as its whole day, hour or minute shows (``instant`` at least).

    A unit is only skipped when the offset is the same at both its ends, so that no wall
    time outside it lies in between.
    """
    local = datetime.fromtimestamp(instant, zone)
    wall = _wall(local)
    for end in expr.block_ends(wall):
        target = instant + int((datetime(*end) - datetime(*wall)).total_seconds())
        if _offset(target, zone) == local.utcoffset():
            return target - 1
    return instant
