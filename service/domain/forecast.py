"""The load forecast: how many fires each minute of a window holds, and its herds.

A herd is a minute with far more fires than the window's typical minute: at least
``min_herd`` fires and at least ``HERD_FACTOR`` times the mean per minute. Herds come
from many schedules on the same cron line (``0 * * * *``), which jitter spreads out;
the forecast counts actual (jittered) fire times for that reason.

Schedules with the same spec and the same actions left share their nominal times, so
each distinct spec is evaluated once; jitter is then applied per schedule. The work is
bounded (``FIRE_BUDGET`` fires in all, ``SPEC_BOUND`` per distinct spec): past a bound
the forecast says it is ``truncated``.

Pure: the window's start is passed in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from service.domain.spec import Spec, iter_fire_times, jittered_time

MINUTE_MS = 60_000
HERD_FACTOR = 10
MIN_HERD = 10
FIRE_BUDGET = 2_000_000
SPEC_BOUND = 200_000
HERDS_LISTED = 100
SCHEDULES_PER_HERD = 20


@dataclass(frozen=True)
class Planned:
    """A schedule as the forecast needs it: id, spec and actions left (None: unlimited)."""

    schedule_id: str
    spec: Spec
    remaining: int | None = None


@dataclass
class Herd:
    minute: int  # index of the minute in the window
    fires: int
    schedules: list[str] = field(default_factory=list)
    more: int = 0  # schedules in the herd beyond those listed


@dataclass
class Forecast:
    start_ms: int
    minutes: int
    counts: list[int]
    threshold: int
    herds: list[Herd]
    total: int
    truncated: bool


def _nominals(spec: Spec, start_ms: int, end_ms: int) -> tuple[list[int], bool]:
    """The nominal times in the window and one past it (so the last time's jitter is
    capped like the ticker's); and whether SPEC_BOUND cut them short."""
    out: list[int] = []
    for nominal in iter_fire_times(spec, start_ms - 1):
        out.append(nominal)
        if nominal >= end_ms or len(out) > SPEC_BOUND:
            break
    return out, len(out) > SPEC_BOUND and out[-1] < end_ms


def _actuals(planned: Planned, nominals: list[int]) -> list[int]:
    """The actual times of a schedule's nominal times, up to the actions it has left."""
    if planned.spec.jitter <= 1:
        actual = nominals
    else:
        nexts: list[int | None] = [*nominals[1:], None]
        actual = [
            jittered_time(planned.spec, planned.schedule_id, n, following)
            for n, following in zip(nominals, nexts, strict=True)
        ]
    return actual if planned.remaining is None else actual[: planned.remaining]


def _minutes_hit(times: Iterable[int], start_ms: int, minutes: int) -> list[int]:
    hit = ((t - start_ms) // MINUTE_MS for t in times)
    return [m for m in hit if 0 <= m < minutes]


def _groups(schedules: Iterable[Planned]) -> list[list[Planned]]:
    """Schedules with equal specs and actions left (a spec's lists make it unhashable)."""
    groups: dict[tuple[str, int | None], list[Planned]] = defaultdict(list)
    for planned in schedules:
        groups[(planned.spec.model_dump_json(), planned.remaining)].append(planned)
    return list(groups.values())


def _shares(members: list[Planned]) -> list[list[Planned]]:
    """Who shares one list of actual times: a group without jitter all together (its
    members differ only by id), with jitter each schedule alone."""
    if members[0].spec.jitter <= 1:
        return [members]
    return [[planned] for planned in members]


def forecast(
    schedules: Iterable[Planned], start_ms: int, minutes: int, min_herd: int = MIN_HERD
) -> Forecast:
    """Fires per minute of ``[start_ms, start_ms + minutes)`` and the herds among them."""
    start_ms -= start_ms % MINUTE_MS
    end_ms = start_ms + minutes * MINUTE_MS
    counts = [0] * minutes
    hits: list[tuple[list[Planned], list[int]]] = []
    spent, truncated = 0, False
    for group in _groups(schedules):
        nominals, cut = _nominals(group[0].spec, start_ms, end_ms)
        truncated |= cut
        for share in _shares(group):
            if spent >= FIRE_BUDGET:
                truncated = True
                break
            window = [t for t in _actuals(share[0], nominals) if start_ms <= t < end_ms]
            minute_list = _minutes_hit(window, start_ms, minutes)
            spent += max(len(nominals), 1) * len(share)
            for m in minute_list:
                counts[m] += len(share)
            hits.append((share, minute_list))
    total = sum(counts)
    threshold = max(min_herd, -(-HERD_FACTOR * total // max(minutes, 1)))
    herds = _herds(counts, threshold, hits)
    return Forecast(start_ms, minutes, counts, threshold, herds, total, truncated)


def _herds(
    counts: list[int], threshold: int, hits: list[tuple[list[Planned], list[int]]]
) -> list[Herd]:
    """The busiest herd minutes (at most HERDS_LISTED, in time order) and who makes them."""
    herd_minutes = [m for m, n in enumerate(counts) if n >= threshold]
    busiest = sorted(herd_minutes, key=lambda m: (-counts[m], m))[:HERDS_LISTED]
    herds = {m: Herd(m, counts[m]) for m in sorted(busiest)}
    for share, minute_list in hits:
        for m in set(minute_list) & herds.keys():
            herd = herds[m]
            room = max(SCHEDULES_PER_HERD - len(herd.schedules), 0)
            herd.schedules += [planned.schedule_id for planned in share[:room]]
            herd.more += max(len(share) - room, 0)
    for herd in herds.values():
        herd.schedules.sort()
    return list(herds.values())
