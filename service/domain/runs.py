"""Run lifecycle events (a run is one execution of a workflow, started by a fire)."""

from __future__ import annotations

from enum import StrEnum

from service.domain.events import Event, register


class RunStatus(StrEnum):
    BUFFERED = "buffered"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timedout"
    DEAD_LETTERED = "deadlettered"


TERMINAL_STATUSES = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.TIMED_OUT,
        RunStatus.DEAD_LETTERED,
    }
)


@register
class RunSucceeded(Event):
    aggregate = "schedule"
    run_id: str
    attempt: int


@register
class RunFailed(Event):
    aggregate = "schedule"
    run_id: str
    attempt: int
    error: str = ""


@register
class RunCancelled(Event):
    aggregate = "schedule"
    run_id: str
    reason: str = ""
