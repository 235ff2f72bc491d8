"""What daylight saving time did to a fire time, in words, for previews.

A fixed-time cron job whose wall time falls in a spring-forward gap runs at the first
instant after the gap, which is the transition itself; a time in a fall-back hour is
one of two passes of the same wall time (see docs/specs.md). Pure: instants in, words
out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_SECOND = timedelta(seconds=1)


def _offset(moment: datetime, zone: ZoneInfo) -> timedelta:
    return moment.astimezone(zone).utcoffset() or timedelta(0)


def dst_note(instant_ms: int, timezone: str) -> str | None:
    """Why DST matters for this instant in ``timezone`` (None: it does not)."""
    try:
        return _note(instant_ms, ZoneInfo(timezone))
    except (OverflowError, ValueError):  # the wall clock would leave years 1-9999
        return None


def _note(instant_ms: int, zone: ZoneInfo) -> str | None:
    moment = datetime.fromtimestamp(instant_ms / 1000, UTC)
    before, now = _offset(moment - _SECOND, zone), _offset(moment, zone)
    if now > before:
        return f"DST starts: clocks jump forward {_span(now - before)} at this time"
    wall = moment.astimezone(zone).replace(tzinfo=None)
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    if first != second:
        which = "first" if moment.astimezone(zone).fold == 0 else "second"
        return f"DST ends: this wall time happens twice; this is the {which} pass"
    return None


def local_time(instant_ms: int, timezone: str) -> str:
    """The instant on the zone's wall clock, with its UTC offset and abbreviation."""
    moment = datetime.fromtimestamp(instant_ms / 1000, UTC)
    try:
        local = moment.astimezone(ZoneInfo(timezone))
    except (OverflowError, ValueError):  # the wall clock would leave years 1-9999
        local = moment
    return local.strftime("%Y-%m-%d %H:%M:%S %Z (UTC%z)")


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds()) // 60
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        return f"{hours} h {rest} min"
    return f"{hours} h" if hours else f"{rest} min"
