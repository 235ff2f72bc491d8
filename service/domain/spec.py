"""When a schedule fires: the spec model and its evaluation (pure, no clock reads).

A spec's nominal times are the union of its cron times (on the wall clock of its
time zone, with Vixie cron's daylight-saving rules, see ``cron_tz``) and its
interval times (real elapsed time from the Unix epoch plus an offset), minus the
times any ``exclude_cron`` expression matches, within ``[start_at, end_at]``.
The actual fire time adds a deterministic jitter. All instants are epoch
milliseconds; nothing here reads a clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from service.domain.cron import CronExpr, parse_cron
from service.domain.cron_tz import fires_at, matched_through, next_fire
from service.domain.spec_describe import describe_cron, describe_interval
from service.domain.types import Duration, Instant

__all__ = [
    "ExcludedTime",
    "IntervalSpec",
    "PreviewRequest",
    "PreviewTime",
    "Spec",
    "SpecPreview",
    "clear_caches",
    "describe",
    "iter_fire_times",
    "jittered_time",
    "next_fire_after",
    "next_fire_times",
    "preview",
    "remaining_times",
]

MAX_EXCLUDED_RUN = 10_000
"""Consecutive excluded candidates after which a spec is taken to have no more times."""

MAX_PREVIEW_EXCLUDED = 1000
"""At most this many excluded times are listed in a preview."""

_RESULT_CACHE_SIZE = 1024
"""Answers a compiled spec keeps (each next time after a time asked): the schedules that
share a spec ask about the same times, and a catch-up walks up to this many without
computing one twice. About 100 KiB a spec when full (4,096 held 430 KiB: most of a
ticker's memory with 1,000 specs)."""


def _valid_cron(text: str) -> str:
    parse_cron(text)
    return text


CronText = Annotated[str, AfterValidator(_valid_cron)]


class IntervalSpec(BaseModel):
    """Every ``every`` of real elapsed time, counted from the Unix epoch plus ``offset``."""

    model_config = ConfigDict(extra="forbid")

    every: Duration
    offset: Duration = 0

    @field_validator("every")
    @classmethod
    def _at_least_a_second(cls, value: int) -> int:
        if value < 1000:
            raise ValueError("every must be at least 1s")
        return value

    @field_validator("offset")
    @classmethod
    def _smaller_than_every(cls, value: int, info: ValidationInfo) -> int:
        every = info.data.get("every")
        if every is not None and value >= every:
            raise ValueError("offset must be smaller than every")
        return value


class Spec(BaseModel):
    """The times a schedule fires at: cron and interval times, in a time zone, within bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: list[CronText] = Field(default_factory=list)
    intervals: list[IntervalSpec] = Field(default_factory=list)
    exclude_cron: list[CronText] = Field(default_factory=list)
    timezone: str = "UTC"
    jitter: Duration = 0
    start_at: Instant | None = None
    end_at: Instant | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("end_at")
    @classmethod
    def _after_start(cls, value: int | None, info: ValidationInfo) -> int | None:
        start = info.data.get("start_at")
        if value is not None and start is not None and value <= start:
            raise ValueError("end_at must be after start_at")
        return value

    @model_validator(mode="after")
    def _has_times(self) -> Spec:
        if not self.cron and not self.intervals:
            raise ValueError("a spec needs at least one cron expression or interval")
        return self


class _Compiled:
    """A spec ready to evaluate: parsed expressions, the zone, and a cache of answers."""

    def __init__(self, spec: Spec) -> None:
        self.zone = ZoneInfo(spec.timezone)
        self.crons: tuple[CronExpr, ...] = tuple(parse_cron(e) for e in spec.cron)
        self.excludes: tuple[CronExpr, ...] = tuple(parse_cron(e) for e in spec.exclude_cron)
        self.intervals = tuple((i.every, i.offset) for i in spec.intervals)
        self.start_at = spec.start_at
        self.end_at = spec.end_at
        self._next: dict[int, int | None] = {}

    def candidate_after(self, after_ms: int) -> int | None:
        """The first cron or interval time after ``after_ms``, before exclusions and bounds."""
        best: int | None = None
        after_s = after_ms // 1000
        for expr in self.crons:
            fire = next_fire(expr, self.zone, after_s)
            if fire is not None and (best is None or fire * 1000 < best):
                best = fire * 1000
        for every, offset in self.intervals:
            fire = ((after_ms - offset) // every + 1) * every + offset
            if best is None or fire < best:
                best = fire
        return best

    def excluded_by(self, nominal_ms: int) -> int | None:
        """The index of the first ``exclude_cron`` entry that excludes ``nominal_ms``."""
        if not self.excludes:
            return None
        instant = nominal_ms // 1000
        for index, expr in enumerate(self.excludes):
            if fires_at(expr, self.zone, instant):
                return index
        return None

    def candidates(self, after_ms: int, listed: int = 0) -> Iterator[tuple[int, int | None]]:
        """Cron and interval times after ``after_ms`` within the bounds, each with the index
        of the exclusion that removes it (None if it stays).

        After the first ``listed`` excluded times, the rest of a minute, hour or day that an
        exclusion covers whole is skipped in one step: only its first time is yielded.
        """
        current = after_ms
        if self.start_at is not None and current < self.start_at - 1:
            current = self.start_at - 1
        while True:
            fire = self.candidate_after(current)
            if fire is None or (self.end_at is not None and fire > self.end_at):
                return
            excluded = self.excluded_by(fire)
            yield fire, excluded
            current = fire
            if excluded is not None and listed > 0:
                listed -= 1
            elif excluded is not None:
                through = matched_through(self.excludes[excluded], self.zone, fire // 1000)
                current = max(fire, through * 1000 + 999)

    def next_after(self, after_ms: int) -> int | None:
        if after_ms in self._next:
            return self._next[after_ms]
        found: int | None = None
        for skipped, (fire, excluded) in enumerate(self.candidates(after_ms)):
            if excluded is None:
                found = fire
                break
            if skipped >= MAX_EXCLUDED_RUN:
                break
        if len(self._next) >= _RESULT_CACHE_SIZE:
            self._next.clear()
        self._next[after_ms] = found
        return found


def _key(spec: Spec) -> tuple[object, ...]:
    return (
        tuple(spec.cron),
        tuple((i.every, i.offset) for i in spec.intervals),
        tuple(spec.exclude_cron),
        spec.timezone,
        spec.start_at,
        spec.end_at,
    )


_COMPILED_CACHE_SIZE = 1024
_compiled_specs: dict[tuple[object, ...], _Compiled] = {}


def _compiled(spec: Spec) -> _Compiled:
    key = _key(spec)
    found = _compiled_specs.get(key)
    if found is None:
        if len(_compiled_specs) >= _COMPILED_CACHE_SIZE:
            _compiled_specs.clear()
        found = _compiled_specs[key] = _Compiled(spec)
    return found


def clear_caches() -> None:
    """Forget compiled specs and cached answers (benchmarks measure cold runs with it)."""
    _compiled_specs.clear()
    parse_cron.cache_clear()


def next_fire_after(spec: Spec, after_ms: int) -> int | None:
    """The first nominal fire time strictly after ``after_ms``, or None if there is none."""
    return _compiled(spec).next_after(after_ms)


def iter_fire_times(spec: Spec, after_ms: int) -> Iterator[int]:
    """Nominal fire times after ``after_ms``, strictly increasing, until ``end_at``."""
    compiled = _compiled(spec)
    current: int | None = compiled.next_after(after_ms)
    while current is not None:
        yield current
        current = compiled.next_after(current)


def next_fire_times(spec: Spec, after_ms: int, count: int) -> list[int]:
    """The next ``count`` nominal fire times after ``after_ms`` (fewer if the spec ends)."""
    out: list[int] = []
    if count <= 0:
        return out
    for fire in iter_fire_times(spec, after_ms):
        out.append(fire)
        if len(out) >= count:
            break
    return out


def remaining_times(spec: Spec, after_ms: int, count: int, remaining: int | None) -> list[int]:
    """Like ``next_fire_times``, for a schedule with ``remaining`` actions left
    (``max_actions`` minus the actions taken; None when unlimited).
    """
    if remaining is not None:
        count = min(count, max(remaining, 0))
    return next_fire_times(spec, after_ms, count)


def jittered_time(
    spec: Spec, schedule_id: str, nominal_ms: int, next_nominal_ms: int | None
) -> int:
    """The actual fire time of ``nominal_ms``: a delay in ``[0, jitter)`` drawn from a hash
    of (schedule id, nominal time), kept strictly before ``next_nominal_ms``.
    """
    window = spec.jitter
    if next_nominal_ms is not None:
        window = min(window, next_nominal_ms - nominal_ms)
    if window <= 1:
        return nominal_ms
    digest = hashlib.blake2b(f"{schedule_id}\x00{nominal_ms}".encode(), digest_size=8).digest()
    return nominal_ms + int.from_bytes(digest, "big") % window


def describe(spec: Spec) -> list[str]:
    """A plain-English reading of each cron expression and interval of ``spec``."""
    lines = [describe_cron(parse_cron(expr)) for expr in spec.cron]
    lines += [describe_interval(i.every, i.offset) for i in spec.intervals]
    return lines


class PreviewTime(BaseModel):
    nominal: Instant
    actual: Instant


class ExcludedTime(BaseModel):
    nominal: Instant
    reason: str


class SpecPreview(BaseModel):
    times: list[PreviewTime]
    excluded: list[ExcludedTime]


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: Spec
    count: int = Field(default=10, ge=1, le=1000)
    after: Instant | None = None
    schedule_id: str | None = None


def preview(spec: Spec, after_ms: int, count: int, schedule_id: str | None = None) -> SpecPreview:
    """The next ``count`` times after ``after_ms`` with their actual (jittered) instants,
    and the times excluded on the way, each with the ``exclude_cron`` entry that did it.

    Without a schedule id the jitter is unknown, so actual equals nominal.
    """
    compiled = _compiled(spec)
    nominals: list[int] = []
    excluded: list[ExcludedTime] = []
    run = 0
    for fire, index in compiled.candidates(after_ms, listed=MAX_PREVIEW_EXCLUDED):
        if len(nominals) >= count or run > MAX_EXCLUDED_RUN:
            break
        if index is None:
            nominals.append(fire)
            run = 0
            continue
        run += 1
        if len(excluded) < MAX_PREVIEW_EXCLUDED:
            reason = f"exclude_cron[{index}]: {spec.exclude_cron[index]}"
            excluded.append(ExcludedTime.model_construct(nominal=fire, reason=reason))
    times = []
    for i, nominal in enumerate(nominals):
        actual = nominal
        if schedule_id is not None:
            following = nominals[i + 1] if i + 1 < len(nominals) else compiled.next_after(nominal)
            actual = jittered_time(spec, schedule_id, nominal, following)
        times.append(PreviewTime.model_construct(nominal=nominal, actual=actual))
    return SpecPreview.model_construct(times=times, excluded=excluded)
