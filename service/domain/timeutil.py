"""Instants and durations: parsing and rendering, with no clock reads.

Instants are UTC epoch milliseconds inside cronstream and RFC 3339 strings at the
edges. Durations are milliseconds inside and accept ``"90s"``, ``"15m"``,
``"1h30m"``, ``"2d"`` or ISO 8601 (``"PT15M"``, ``"P1DT2H"``) at the edges.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_SHORT = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_ISO = re.compile(
    r"P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)


MAX_DURATION_MS = 100 * 366 * 86_400_000
"""Durations are bounded (a century): longer ones are a mistake, and overflow dates."""

MIN_INSTANT_MS = 0  # 1970-01-01T00:00:00Z
MAX_INSTANT_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z


def parse_duration(text: str | int | float) -> int:
    """Return the duration ``text`` in milliseconds; raise ValueError if malformed."""
    ms = _parse_duration(text)
    if ms > MAX_DURATION_MS:
        raise ValueError(f"duration {text!r} is longer than a century")
    return ms


def _parse_duration(text: str | int | float) -> int:
    if isinstance(text, bool):
        raise ValueError("a duration must be a string such as '15m' or a number of seconds")
    if isinstance(text, int | float):
        if not 0 <= text <= MAX_DURATION_MS / 1000:  # also rejects NaN
            raise ValueError("a duration must be between 0 and a century")
        return round(text * 1000)
    raw = text.strip()
    if not raw:
        raise ValueError("a duration must not be empty")
    if raw.upper().startswith("P"):
        match = _ISO.fullmatch(raw.upper())
        if match is None or raw.upper() in ("P", "PT") or raw.upper().endswith("T"):
            raise ValueError(f"invalid ISO 8601 duration {text!r}")
        parts = match.groupdict()
        total = 0.0
        for key, unit in (("w", "w"), ("d", "d"), ("h", "h"), ("m", "m"), ("s", "s")):
            if parts[key]:
                total += float(parts[key]) * _UNIT_MS[unit]
        return round(total)
    pos = 0
    total = 0.0
    for match in _SHORT.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or pos == 0:
        raise ValueError(f"invalid duration {text!r}: use '90s', '15m', '1h30m' or 'PT15M'")
    return round(total)


def format_duration(ms: int) -> str:
    """Render milliseconds in the short form parse_duration reads (``1h30m``)."""
    if ms == 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNIT_MS[unit]
        if ms >= size:
            count, ms = divmod(ms, size)
            out.append(f"{count}{unit}")
    return "".join(out)


def parse_instant(text: str) -> int:
    """Parse an RFC 3339 instant (a zone offset is required) to epoch milliseconds."""
    raw = text.strip()
    if raw.endswith(("z", "Z")):
        raw = raw[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"invalid RFC 3339 instant {text!r}") from exc
    if moment.tzinfo is None:
        raise ValueError(f"instant {text!r} needs a UTC offset, such as 'Z' or '+02:00'")
    ms = (moment - _EPOCH) // timedelta(milliseconds=1)
    if not MIN_INSTANT_MS <= ms <= MAX_INSTANT_MS:
        raise ValueError(f"instant {text!r} is outside 1970-01-01 .. 9999-12-31")
    return ms


@lru_cache(maxsize=65_536)
def to_rfc3339(ms: int) -> str:
    """Render epoch milliseconds as RFC 3339 UTC with a ``Z`` suffix.

    Cached: the ticker renders the same nominal times for every schedule that shares them.
    """
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if ms % 1000:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
