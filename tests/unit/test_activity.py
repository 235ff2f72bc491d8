"""The activity log's budget: a burst of lines per window, then a count of those held back."""

from __future__ import annotations

import logging

import pytest

from service.activity import ActivityLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_past_the_burst_are_held_back_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = ActivityLog(logging.getLogger("t.activity"), burst=3, window_s=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="t.activity"):
        written = [log.warning("run.failed", "run %d failed", i) for i in range(10)]
        assert written == [True] * 3 + [False] * 7
        assert log.info("run.retry", "another kind has its own budget")
        clock.now = 10.0
        assert log.warning("run.failed", "run %d failed", 10)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == ["run 0 failed", "run 1 failed", "run 2 failed"]
    assert lines[-1] == "run 10 failed (7 more run.failed line(s) held back in the last 10 s)"
    assert all(getattr(r, "activity", None) for r in caplog.records)


def test_nothing_is_counted_below_the_logger_level() -> None:
    logger = logging.getLogger("t.quiet")
    logger.setLevel(logging.ERROR)
    log = ActivityLog(logger, burst=1)
    assert not log.info("fire", "quiet")
    assert log._budgets == {}
