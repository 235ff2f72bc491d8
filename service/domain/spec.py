"""When a schedule fires: the spec model and its evaluation (pure, no clock reads)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.domain.types import Duration, Instant


class IntervalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    every: Duration
    offset: Duration = 0


class Spec(BaseModel):
    """The times a schedule fires at: cron and interval times, in a time zone, within bounds."""

    model_config = ConfigDict(extra="forbid")

    cron: list[str] = Field(default_factory=list)
    intervals: list[IntervalSpec] = Field(default_factory=list)
    exclude_cron: list[str] = Field(default_factory=list)
    timezone: str = "UTC"
    jitter: Duration = 0
    start_at: Instant | None = None
    end_at: Instant | None = None

    @field_validator("cron", "exclude_cron")
    @classmethod
    def _valid_cron(cls, value: list[str]) -> list[str]:
        for expr in value:
            if not croniter.is_valid(expr):
                raise ValueError(f"invalid cron expression {expr!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _has_times(self) -> Spec:
        if not self.cron and not self.intervals:
            raise ValueError("a spec needs at least one cron expression or interval")
        return self


def next_fire_after(spec: Spec, after_ms: int) -> int | None:
    """The first nominal fire time strictly after ``after_ms``, or None if there is none."""
    zone = ZoneInfo(spec.timezone)
    start = datetime.fromtimestamp(after_ms / 1000, tz=UTC).astimezone(zone)
    best: int | None = None
    for expr in spec.cron:
        nxt = croniter(expr, start).get_next(datetime)
        ms = int(nxt.timestamp() * 1000)
        if best is None or ms < best:
            best = ms
    for interval in spec.intervals:
        every, offset = interval.every, interval.offset
        ms = ((after_ms - offset) // every + 1) * every + offset
        if best is None or ms < best:
            best = ms
    if best is not None and spec.end_at is not None and best > spec.end_at:
        return None
    return best


def iter_fire_times(spec: Spec, after_ms: int) -> Iterator[int]:
    """Nominal fire times after ``after_ms``, in increasing order."""
    current = after_ms
    if spec.start_at is not None and current < spec.start_at - 1:
        current = spec.start_at - 1
    while True:
        nxt = next_fire_after(spec, current)
        if nxt is None:
            return
        yield nxt
        current = nxt


def next_fire_times(spec: Spec, after_ms: int, count: int) -> list[int]:
    """The next ``count`` nominal fire times after ``after_ms``."""
    out: list[int] = []
    for ms in iter_fire_times(spec, after_ms):
        if len(out) >= count:
            break
        out.append(ms)
    return out
