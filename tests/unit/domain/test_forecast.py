"""The load forecast: fires per minute of a window, herds and who makes them."""

from __future__ import annotations

from service.domain.dst_notes import dst_note, local_time
from service.domain.forecast import MINUTE_MS, Planned, forecast
from service.domain.spec import Spec
from service.domain.timeutil import parse_instant

START = parse_instant("2026-01-15T12:00:00Z")
DAY = 24 * 60


def planned(sid: str, *cron: str, jitter: str = "0s", remaining: int | None = None) -> Planned:
    return Planned(sid, Spec.model_validate({"cron": list(cron), "jitter": jitter}), remaining)


def test_a_hundred_schedules_on_the_hour_make_a_herd_at_each_hour() -> None:
    herd = [planned(f"h{i:03}", "0 * * * *") for i in range(100)]
    quiet = [planned(f"q{i}", f"{i} 3 * * *") for i in range(1, 6)]
    result = forecast([*herd, *quiet], START, DAY)
    assert result.total == 100 * 24 + 5
    assert [h.minute for h in result.herds] == [60 * k for k in range(24)]
    first = result.herds[0]
    assert first.fires == 100 and len(first.schedules) == 20 and first.more == 80
    assert first.schedules == sorted(first.schedules) and first.schedules[0].startswith("h")
    assert result.counts[15 * 60 + 1] == 1  # q1 at 03:01, not a herd
    assert not result.truncated


def test_jitter_spreads_a_herd_below_the_threshold() -> None:
    spread = [planned(f"j{i:03}", "0 * * * *", jitter="30m") for i in range(100)]
    result = forecast(spread, START, DAY)
    assert result.total == 100 * 24
    assert result.herds == []
    assert max(result.counts) < result.threshold


def test_a_schedule_with_actions_left_counts_only_those() -> None:
    result = forecast([planned("few", "*/5 * * * *", remaining=3)], START, 60)
    assert result.total == 3
    assert [i for i, n in enumerate(result.counts) if n] == [0, 5, 10]


def test_the_window_starts_at_its_minute_and_holds_no_later_fire() -> None:
    result = forecast([planned("m", "* * * * *")], START + 30_000, 10)
    assert result.start_ms == START
    assert result.counts == [1] * 10


def test_the_threshold_follows_the_mean_and_the_minimum() -> None:
    every_minute = [planned(f"e{i}", "* * * * *") for i in range(12)]
    result = forecast(every_minute, START, 60, min_herd=5)
    # 12 a minute everywhere: nothing stands out, so nothing is a herd
    assert result.threshold == 120 and result.herds == []
    # one fire in an hour: ten times the mean rounds up to 1
    assert forecast([planned("one", "0 * * * *")], START, 60, min_herd=1).threshold == 1


def test_minutes_are_counted_on_the_minute() -> None:
    result = forecast([planned("s", "30 * * * * *")], START, 3)
    assert result.counts == [1, 1, 1]
    assert result.start_ms % MINUTE_MS == 0


def test_dst_notes_mark_the_moved_and_the_repeated_times() -> None:
    zone = "America/New_York"
    moved = parse_instant("2024-03-10T07:00:00Z")  # 02:30 EST does not exist: 03:00 EDT
    assert dst_note(moved, zone) == "DST starts: clocks jump forward 1 h at this time"
    first, second = parse_instant("2024-11-03T05:30:00Z"), parse_instant("2024-11-03T06:30:00Z")
    assert dst_note(first, zone) is not None and "first pass" in dst_note(first, zone)  # type: ignore[operator]
    assert "second pass" in (dst_note(second, zone) or "")
    assert dst_note(parse_instant("2024-11-04T06:30:00Z"), zone) is None
    assert local_time(moved, zone) == "2024-03-10 03:00:00 EDT (UTC-0400)"
    assert dst_note(parse_instant("2024-10-05T15:30:00Z"), "Australia/Lord_Howe") == (
        "DST starts: clocks jump forward 30 min at this time"
    )
