"""Log lines a person can watch: what fired, what failed, what was retried or paused.

A fleet of ten thousand schedules must not turn the log into a flood, so each kind of
line has a budget: at most ``burst`` lines per ``window_s``; past it, lines are
counted, and the first line of the next window says how many were held back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

BURST = 20
WINDOW_S = 10.0


@dataclass
class _Budget:
    window_start: float
    used: int = 0
    held_back: int = 0


@dataclass
class ActivityLog:
    """A logger whose lines are limited per kind (e.g. ``run.failed``, ``fire``)."""

    logger: logging.Logger
    burst: int = BURST
    window_s: float = WINDOW_S
    clock: Callable[[], float] = time.monotonic
    _budgets: dict[str, _Budget] = field(default_factory=dict)

    def log(self, level: int, kind: str, msg: str, *args: Any, **extra: Any) -> bool:
        """Log one line of ``kind`` if its budget allows; True when it was written."""
        if not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        budget = self._budgets.get(kind)
        if budget is None or now - budget.window_start >= self.window_s:
            held = budget.held_back if budget is not None else 0
            budget = self._budgets[kind] = _Budget(now)
            if held:
                msg += " (%d more %s line(s) held back in the last %.0f s)"
                args = (*args, held, kind, self.window_s)
        if budget.used >= self.burst:
            budget.held_back += 1
            return False
        budget.used += 1
        self.logger.log(level, msg, *args, extra={"activity": kind, **extra})
        return True

    def info(self, kind: str, msg: str, *args: Any, **extra: Any) -> bool:
        return self.log(logging.INFO, kind, msg, *args, **extra)

    def warning(self, kind: str, msg: str, *args: Any, **extra: Any) -> bool:
        return self.log(logging.WARNING, kind, msg, *args, **extra)
