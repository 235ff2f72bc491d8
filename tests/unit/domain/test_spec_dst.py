"""Fire times across daylight-saving transitions, zone by zone.

Every expected instant is written out by hand from the zone's rules:

- America/New_York 2024: 03-10 02:00 EST -> 03:00 EDT at 07:00Z; 11-03 02:00 EDT -> 01:00 EST
  at 06:00Z (01:00-02:00 repeats).
- Europe/Berlin 2024: 03-31 02:00 CET -> 03:00 CEST at 01:00Z; 10-27 03:00 CEST -> 02:00 CET
  at 01:00Z (02:00-03:00 repeats).
- Europe/London 2024: 03-31 01:00 GMT -> 02:00 BST at 01:00Z; 10-27 02:00 BST -> 01:00 GMT
  at 01:00Z (01:00-02:00 repeats).
- Australia/Lord_Howe (+10:30, +11 in summer): 2024-04-07 02:00 -> 01:30 at 04-06T15:00Z
  (01:30-02:00 repeats); 2024-10-06 02:00 -> 02:30 at 10-05T15:30Z.
- Pacific/Chatham (+12:45, +13:45 in summer): 2024-04-07 03:45 -> 02:45 at 04-06T14:00Z
  (02:45-03:45 repeats); 2024-09-29 02:45 -> 03:45 at 09-28T14:00Z.
- Asia/Kathmandu: +05:45 all year.
"""

from __future__ import annotations

import pytest

from service.domain.spec import Spec, next_fire_times
from service.domain.timeutil import parse_instant, to_rfc3339

NY, BERLIN, LONDON = "America/New_York", "Europe/Berlin", "Europe/London"
LORD_HOWE, CHATHAM, KATHMANDU = "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kathmandu"

CASES = [
    # New York, fixed-time: once after the gap, once (first pass) in the repeat.
    (
        "30 2 * * *",
        NY,
        "2024-03-09T00:00:00Z",
        ["2024-03-09T07:30:00Z", "2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"],
    ),
    (
        "30 1 * * *",
        NY,
        "2024-11-02T00:00:00Z",
        ["2024-11-02T05:30:00Z", "2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"],
    ),
    # Starting inside the second pass (01:00 EST): today's 01:30 already ran at 05:30Z.
    ("30 1 * * *", NY, "2024-11-03T06:00:00Z", ["2024-11-04T06:30:00Z"]),
    # New York, wildcard: skips the gap, runs in both passes.
    (
        "*/30 * * * *",
        NY,
        "2024-03-10T06:00:00Z",
        ["2024-03-10T06:30:00Z", "2024-03-10T07:00:00Z", "2024-03-10T07:30:00Z"],
    ),
    (
        "30 * * * *",
        NY,
        "2024-11-03T04:45:00Z",
        ["2024-11-03T05:30:00Z", "2024-11-03T06:30:00Z", "2024-11-03T07:30:00Z"],
    ),
    # Starting inside the first pass (01:10 EDT): 01:30 EDT, then 01:00 and 01:30 again.
    (
        "*/30 * * * *",
        NY,
        "2024-11-03T05:10:00Z",
        [
            "2024-11-03T05:30:00Z",
            "2024-11-03T06:00:00Z",
            "2024-11-03T06:30:00Z",
            "2024-11-03T07:00:00Z",
        ],
    ),
    ("* 2 * * *", NY, "2024-03-10T06:58:00Z", ["2024-03-11T06:00:00Z", "2024-03-11T06:01:00Z"]),
    ("@hourly", NY, "2024-03-10T06:30:00Z", ["2024-03-10T07:00:00Z", "2024-03-10T08:00:00Z"]),
    (
        "@hourly",
        NY,
        "2024-11-03T04:30:00Z",
        ["2024-11-03T05:00:00Z", "2024-11-03T06:00:00Z", "2024-11-03T07:00:00Z"],
    ),
    (
        "0 9 * * MON-FRI",
        NY,
        "2024-03-08T00:00:00Z",
        ["2024-03-08T14:00:00Z", "2024-03-11T13:00:00Z"],
    ),
    # Berlin.
    (
        "30 2 * * *",
        BERLIN,
        "2024-03-30T00:00:00Z",
        ["2024-03-30T01:30:00Z", "2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"],
    ),
    (
        "30 2 * * *",
        BERLIN,
        "2024-10-26T00:00:00Z",
        ["2024-10-26T00:30:00Z", "2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"],
    ),
    (
        "*/30 2 * * *",
        BERLIN,
        "2024-10-27T00:00:00Z",
        [
            "2024-10-27T00:30:00Z",
            "2024-10-27T01:00:00Z",
            "2024-10-27T01:30:00Z",
            "2024-10-28T01:00:00Z",
        ],
    ),
    ("*/30 2 * * *", BERLIN, "2024-03-30T23:00:00Z", ["2024-04-01T00:00:00Z"]),
    ("0 2 * * *", BERLIN, "2024-03-30T12:00:00Z", ["2024-03-31T01:00:00Z"]),
    # London.
    (
        "30 1 * * *",
        LONDON,
        "2024-03-30T00:00:00Z",
        ["2024-03-30T01:30:00Z", "2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"],
    ),
    (
        "30 1 * * *",
        LONDON,
        "2024-10-26T12:00:00Z",
        ["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"],
    ),
    (
        "15,45 * * * *",
        LONDON,
        "2024-10-27T00:00:00Z",
        [
            "2024-10-27T00:15:00Z",
            "2024-10-27T00:45:00Z",
            "2024-10-27T01:15:00Z",
            "2024-10-27T01:45:00Z",
        ],
    ),
    # Lord Howe: a 30-minute shift.
    (
        "15 2 * * *",
        LORD_HOWE,
        "2024-10-04T14:00:00Z",
        ["2024-10-04T15:45:00Z", "2024-10-05T15:30:00Z", "2024-10-06T15:15:00Z"],
    ),
    (
        "45 * * * *",
        LORD_HOWE,
        "2024-10-05T14:00:00Z",
        [
            "2024-10-05T14:15:00Z",
            "2024-10-05T15:15:00Z",
            "2024-10-05T15:45:00Z",
            "2024-10-05T16:45:00Z",
        ],
    ),
    ("15 * * * *", LORD_HOWE, "2024-10-05T15:00:00Z", ["2024-10-05T16:15:00Z"]),
    (
        "45 1 * * *",
        LORD_HOWE,
        "2024-04-05T14:00:00Z",
        ["2024-04-05T14:45:00Z", "2024-04-06T14:45:00Z", "2024-04-07T15:15:00Z"],
    ),
    (
        "*/15 * * * *",
        LORD_HOWE,
        "2024-04-06T14:20:00Z",
        [
            "2024-04-06T14:30:00Z",
            "2024-04-06T14:45:00Z",
            "2024-04-06T15:00:00Z",
            "2024-04-06T15:15:00Z",
            "2024-04-06T15:30:00Z",
        ],
    ),
    # Chatham: +12:45 / +13:45.
    (
        "0 3 * * *",
        CHATHAM,
        "2024-09-27T12:00:00Z",
        ["2024-09-27T14:15:00Z", "2024-09-28T14:00:00Z", "2024-09-29T13:15:00Z"],
    ),
    (
        "0 * * * *",
        CHATHAM,
        "2024-09-28T12:00:00Z",
        ["2024-09-28T12:15:00Z", "2024-09-28T13:15:00Z", "2024-09-28T14:15:00Z"],
    ),
    (
        "0 3 * * *",
        CHATHAM,
        "2024-04-05T12:00:00Z",
        ["2024-04-05T13:15:00Z", "2024-04-06T13:15:00Z", "2024-04-07T14:15:00Z"],
    ),
    (
        "0 * * * *",
        CHATHAM,
        "2024-04-06T12:00:00Z",
        [
            "2024-04-06T12:15:00Z",
            "2024-04-06T13:15:00Z",
            "2024-04-06T14:15:00Z",
            "2024-04-06T15:15:00Z",
        ],
    ),
    # Kathmandu: +05:45, no DST.
    (
        "0 9 * * *",
        KATHMANDU,
        "2024-01-01T00:00:00Z",
        ["2024-01-01T03:15:00Z", "2024-01-02T03:15:00Z"],
    ),
    (
        "*/15 * * * *",
        KATHMANDU,
        "2024-01-01T00:00:00Z",
        ["2024-01-01T00:15:00Z", "2024-01-01T00:30:00Z", "2024-01-01T00:45:00Z"],
    ),
    (
        "0 0 L * *",
        KATHMANDU,
        "2024-02-01T00:00:00Z",
        ["2024-02-28T18:15:00Z", "2024-03-30T18:15:00Z"],
    ),
    # Six fields: the minute and hour fields decide; a fixed time of day in the gap runs at
    # the first instant after it, and once in the repeat.
    ("0 30 2 * * *", NY, "2024-03-09T12:00:00Z", ["2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"]),
    ("15 30 2 * * *", NY, "2024-03-09T12:00:00Z", ["2024-03-10T07:00:00Z", "2024-03-11T06:30:15Z"]),
    ("15 30 1 * * *", NY, "2024-11-03T00:00:00Z", ["2024-11-03T05:30:15Z", "2024-11-04T06:30:15Z"]),
    (
        "0 */30 * * * *",
        NY,
        "2024-11-03T05:10:00Z",
        ["2024-11-03T05:30:00Z", "2024-11-03T06:00:00Z", "2024-11-03T06:30:00Z"],
    ),
]


@pytest.mark.parametrize(("expr", "zone", "after", "expected"), CASES)
def test_fire_times(expr: str, zone: str, after: str, expected: list[str]) -> None:
    spec = Spec(cron=[expr], timezone=zone)
    times = next_fire_times(spec, parse_instant(after), len(expected))
    assert [to_rfc3339(t) for t in times] == expected


def test_fixed_time_job_in_gap_shares_one_run_with_the_hour_after() -> None:
    # 02:00 and 02:30 do not exist; both run once, at 03:00 EDT, which 03:00 also names.
    spec = Spec(cron=["0,30 2,3 * * *"], timezone=NY)
    times = next_fire_times(spec, parse_instant("2024-03-10T06:00:00Z"), 3)
    assert [to_rfc3339(t) for t in times] == [
        "2024-03-10T07:00:00Z",
        "2024-03-10T07:30:00Z",
        "2024-03-11T06:00:00Z",
    ]


def test_intervals_ignore_daylight_saving() -> None:
    spec = Spec(intervals=[{"every": "1h"}], timezone=NY)
    times = next_fire_times(spec, parse_instant("2024-11-03T04:30:00Z"), 4)
    assert [to_rfc3339(t) for t in times] == [
        "2024-11-03T05:00:00Z",
        "2024-11-03T06:00:00Z",
        "2024-11-03T07:00:00Z",
        "2024-11-03T08:00:00Z",
    ]
