from __future__ import annotations

import pytest

from service.domain.timeutil import format_duration, parse_duration, parse_instant, to_rfc3339


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("90s", 90_000),
        ("15m", 900_000),
        ("1h30m", 5_400_000),
        ("2d", 172_800_000),
        ("250ms", 250),
        ("PT15M", 900_000),
        ("P1DT2H", 93_600_000),
        ("PT0.5S", 500),
        (30, 30_000),
        (1.5, 1_500),
    ],
)
def test_parse_duration(text: str | int | float, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "15", "m15", "1h 30m", "P", "PT", "soon", "-5s", -1])
def test_parse_duration_rejects(text: str | int) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("ms", [0, 1000, 5_400_000, 93_600_250])
def test_format_round_trips(ms: int) -> None:
    assert parse_duration(format_duration(ms)) == ms


def test_instants() -> None:
    assert parse_instant("2026-01-15T12:00:00Z") == 1_768_478_400_000
    assert parse_instant("2026-01-15T13:00:00+01:00") == 1_768_478_400_000
    assert parse_instant("2026-01-15T12:00:00.123Z") == 1_768_478_400_123
    assert to_rfc3339(1_768_478_400_000) == "2026-01-15T12:00:00Z"
    assert to_rfc3339(1_768_478_400_123) == "2026-01-15T12:00:00.123Z"
    with pytest.raises(ValueError, match="UTC offset"):
        parse_instant("2026-01-15T12:00:00")
    with pytest.raises(ValueError):
        parse_instant("yesterday")


def test_durations_and_instants_are_bounded() -> None:
    with pytest.raises(ValueError, match="century"):
        parse_duration("40000d")
    with pytest.raises(ValueError, match="century"):
        parse_duration(1e300)
    with pytest.raises(ValueError):
        parse_duration(float("nan"))
    with pytest.raises(ValueError, match=r"1970-01-01 \.\. 9999-12-31"):
        parse_instant("0001-01-01T00:00:00Z")
    with pytest.raises(ValueError, match=r"1970-01-01 \.\. 9999-12-31"):
        parse_instant("1969-12-31T23:59:59Z")
    assert parse_instant("9999-12-31T23:59:59Z") == 253_402_300_799_000
