"""Properties of the spec engine on generated expressions, checked against an oracle that
matches wall-clock times from the generated field sets, and against cronsim where no
daylight saving can make implementations differ.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.spec import Spec, jittered_time, next_fire_after, next_fire_times

SETTINGS = settings(max_examples=150, deadline=None, database=None)

DST_ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Europe/London",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
]
FIXED_ZONES = ["UTC", "Asia/Kathmandu", "Asia/Tokyo"]
ZONES = [*DST_ZONES, "Asia/Kathmandu", "UTC"]

# Instants near the 2024 transitions of the zones above, so that generated runs cross them.
TRANSITIONS = [
    datetime(2024, 3, 10, 7, tzinfo=UTC),
    datetime(2024, 11, 3, 6, tzinfo=UTC),
    datetime(2024, 3, 31, 1, tzinfo=UTC),
    datetime(2024, 10, 27, 1, tzinfo=UTC),
    datetime(2024, 4, 6, 15, tzinfo=UTC),
    datetime(2024, 10, 5, 15, 30, tzinfo=UTC),
    datetime(2024, 4, 6, 14, tzinfo=UTC),
    datetime(2024, 9, 28, 14, tzinfo=UTC),
]


@dataclass(frozen=True)
class Generated:
    """A cron expression and the sets it names, as the oracle reads them."""

    text: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]  # 0 = Sunday
    day_and: bool
    has_seconds: bool

    @property
    def fixed_time(self) -> bool:
        parts = self.text.split()[-5:]
        return not (parts[0].startswith("*") or parts[1].startswith("*"))

    def matches(self, wall: datetime) -> bool:
        dom = wall.day in self.doms
        dow = (wall.isoweekday() % 7) in self.dows
        day = (dom and dow) if self.day_and else (dom or dow)
        return (
            day
            and wall.month in self.months
            and wall.hour in self.hours
            and wall.minute in self.minutes
            and (not self.has_seconds or wall.second in self.seconds)
        )


@st.composite
def field(draw: st.DrawFn, lo: int, hi: int, top: int | None = None) -> tuple[str, frozenset[int]]:
    """A field text and its values; ``*`` and steps run to ``top``, other values to ``hi``."""
    top = hi if top is None else top
    kind = draw(st.sampled_from(["star", "step", "single", "range", "list", "range_step"]))
    if kind == "star":
        return "*", frozenset(range(lo, top + 1))
    if kind == "step":
        step = draw(st.integers(2, max(2, (hi - lo) // 2)))
        return f"*/{step}", frozenset(range(lo, top + 1, step))
    if kind == "single":
        value = draw(st.integers(lo, hi))
        return str(value), frozenset({value})
    if kind == "list":
        values = draw(st.lists(st.integers(lo, hi), min_size=2, max_size=4, unique=True))
        return ",".join(map(str, values)), frozenset(values)
    a = draw(st.integers(lo, hi - 1))
    b = draw(st.integers(a + 1, hi))
    if kind == "range":
        return f"{a}-{b}", frozenset(range(a, b + 1))
    step = draw(st.integers(1, 5))
    return f"{a}-{b}/{step}", frozenset(range(a, b + 1, step))


@st.composite
def expressions(
    draw: st.DrawFn, seconds: bool | None = None, single_weekday: bool = False
) -> Generated:
    """Expressions; ``single_weekday`` keeps them to one day a week (as exclusions, so
    that they never exclude every time of a spec).
    """
    with_seconds = draw(st.booleans()) if seconds is None else seconds
    second_text, second_set = draw(field(0, 59)) if with_seconds else ("0", frozenset({0}))
    minute_text, minute_set = draw(field(0, 59))
    hour_text, hour_set = draw(field(0, 23))
    dom_text, dom_set = draw(st.just(("*", frozenset(range(1, 32)))) | field(1, 28, top=31))
    month_text, month_set = draw(st.just(("*", frozenset(range(1, 13)))) | field(1, 12))
    dow_text, dow_set = draw(st.just(("*", frozenset(range(7)))) | field(0, 6))
    if single_weekday:
        dom_text, dom_set = "*", frozenset(range(1, 32))
        weekday = draw(st.integers(0, 6))
        dow_text, dow_set = str(weekday), frozenset({weekday})
    fields = [minute_text, hour_text, dom_text, month_text, dow_text]
    if with_seconds:
        fields.insert(0, second_text)
    return Generated(
        " ".join(fields),
        second_set,
        minute_set,
        hour_set,
        dom_set,
        month_set,
        dow_set,
        dom_text.startswith("*") or dow_text.startswith("*"),
        with_seconds,
    )


@st.composite
def instants(draw: st.DrawFn) -> int:
    base = draw(st.sampled_from(TRANSITIONS))
    shift = draw(st.integers(-2 * 86_400, 86_400))
    return int((base + timedelta(seconds=shift)).timestamp()) * 1000


def wall(ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, zone)


def is_gap_shift(expr: Generated, ms: int, zone: ZoneInfo) -> bool:
    """``ms`` is the first instant after a gap that holds a time ``expr`` names."""
    here, before = wall(ms, zone), wall(ms - 1000, zone)
    jump = (here.utcoffset() or timedelta()) - (before.utcoffset() or timedelta())
    if jump <= timedelta(0):
        return False
    start = here.replace(tzinfo=None) - jump
    step = timedelta(seconds=1 if expr.has_seconds else 60)
    probe = start
    while probe < here.replace(tzinfo=None):
        if expr.matches(probe):
            return True
        probe += step
    return False


def second_pass(ms: int, zone: ZoneInfo) -> bool:
    """``ms`` falls in the second pass of a repeated interval of wall time."""
    return wall(ms, zone).fold == 1


@SETTINGS
@given(expressions(), st.sampled_from(ZONES), instants())
def test_times_increase_and_match_the_wall_clock(
    expr: Generated, zone_name: str, after: int
) -> None:
    zone = ZoneInfo(zone_name)
    times = next_fire_times(Spec(cron=[expr.text], timezone=zone_name), after, 12)
    assert times, expr.text
    assert times[0] > after
    assert all(a < b for a, b in pairwise(times))
    for ms in times:
        assert ms % 1000 == 0
        local = wall(ms, zone)
        if expr.matches(local.replace(tzinfo=None)):
            # A fixed-time job does not run again in the second pass of a repeat.
            assert not (expr.fixed_time and second_pass(ms, zone)), (expr.text, ms)
        else:
            assert expr.fixed_time and is_gap_shift(expr, ms, zone), (expr.text, ms)


@SETTINGS
@given(
    expressions(seconds=False),
    st.sampled_from(ZONES),
    instants(),
    st.randoms(use_true_random=False),
)
def test_nothing_is_skipped_between_two_times(
    expr: Generated, zone_name: str, after: int, rnd: random.Random
) -> None:
    zone = ZoneInfo(zone_name)
    times = next_fire_times(Spec(cron=[expr.text], timezone=zone_name), after, 6)
    for lo, hi in pairwise([after, *times]):
        first_minute = lo // 60_000 + 1
        last_minute = (hi - 1) // 60_000
        minutes = range(first_minute, last_minute + 1)
        sample = minutes if len(minutes) <= 300 else rnd.sample(minutes, 300)
        for minute in sample:
            ms = minute * 60_000
            if expr.matches(wall(ms, zone).replace(tzinfo=None)):
                # Only a fixed-time job's second pass may go unfired.
                assert expr.fixed_time and second_pass(ms, zone), (expr.text, ms, lo, hi)


@SETTINGS
@given(expressions(), expressions(single_weekday=True), st.sampled_from(ZONES), instants())
def test_exclusions_never_appear(
    expr: Generated, exclusion: Generated, zone_name: str, after: int
) -> None:
    zone = ZoneInfo(zone_name)
    spec = Spec(cron=[expr.text], exclude_cron=[exclusion.text], timezone=zone_name)
    for ms in next_fire_times(spec, after, 8):
        local = wall(ms, zone).replace(tzinfo=None)
        assert not exclusion.matches(local), (expr.text, exclusion.text, ms)
        assert not (exclusion.fixed_time and is_gap_shift(exclusion, ms, zone))


@SETTINGS
@given(
    st.integers(1, 86_400).map(lambda s: s * 1000),
    st.data(),
    st.integers(-(10**12), 10**13),
)
def test_intervals_are_exact(every: int, data: st.DataObject, after: int) -> None:
    offset = data.draw(st.integers(0, every - 1000).map(lambda ms: ms - ms % 1000))
    spec = Spec(
        intervals=[{"every": every / 1000, "offset": offset / 1000}], timezone="Europe/Berlin"
    )
    times = next_fire_times(spec, after, 5)
    assert after < times[0] <= after + every
    for ms in times:
        assert (ms - offset) % every == 0
    assert all(b - a == every for a, b in pairwise(times))


@SETTINGS
@given(
    st.text(min_size=1, max_size=20),
    st.integers(0, 10**13),
    st.integers(0, 3_600_000),
    st.one_of(st.none(), st.integers(1, 7_200_000)),
)
def test_jitter_is_deterministic_and_bounded(
    schedule_id: str, nominal: int, jitter: int, gap: int | None
) -> None:
    spec = Spec(cron=["* * * * *"], jitter=jitter / 1000)
    following = None if gap is None else nominal + gap
    actual = jittered_time(spec, schedule_id, nominal, following)
    assert actual == jittered_time(spec, schedule_id, nominal, following)
    assert nominal <= actual
    assert actual < nominal + max(spec.jitter, 1)
    if following is not None:
        assert actual < following


def cronsim_times(text: str, zone: ZoneInfo, after: int, count: int) -> list[int]:
    start = datetime.fromtimestamp(after // 1000, zone)
    it = CronSim(text, start)
    return [int(next(it).timestamp()) * 1000 for _ in range(count)]


@SETTINGS
@given(
    expressions(),
    st.sampled_from(FIXED_ZONES),
    st.integers(946_684_800, 4_102_444_800).map(lambda s: s * 1000),
)
def test_agrees_with_cronsim_where_there_is_no_dst(
    expr: Generated, zone_name: str, after: int
) -> None:
    zone = ZoneInfo(zone_name)
    ours = next_fire_times(Spec(cron=[expr.text], timezone=zone_name), after, 10)
    assert ours == cronsim_times(expr.text, zone, after, 10)


SPECIAL_DAYS = st.sampled_from(["L", "LW", "1", "15", "28-31", "*/7"])
SPECIAL_WEEKDAYS = st.sampled_from(["*", "5L", "1#1", "FRI#2", "0#5", "MON-FRI", "SAT,SUN", "1L"])


@SETTINGS
@given(
    SPECIAL_DAYS,
    SPECIAL_WEEKDAYS,
    st.sampled_from(["*", "2", "JAN,JUL", "*/3"]),
    st.sampled_from(FIXED_ZONES),
    st.integers(946_684_800, 4_102_444_800).map(lambda s: s * 1000),
)
def test_agrees_with_cronsim_on_special_days(
    dom: str, dow: str, month: str, zone_name: str, after: int
) -> None:
    text = f"30 6 {dom} {month} {dow}"
    ours = next_fire_times(Spec(cron=[text], timezone=zone_name), after, 6)
    assert ours == cronsim_times(text, ZoneInfo(zone_name), after, 6)


def test_next_fire_after_is_the_head_of_next_fire_times() -> None:
    spec = Spec(cron=["*/7 3-5 * * *"], timezone="Australia/Lord_Howe")
    after = int(TRANSITIONS[4].timestamp()) * 1000
    assert next_fire_after(spec, after) == next_fire_times(spec, after, 1)[0]
