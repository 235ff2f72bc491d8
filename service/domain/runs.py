"""The run lifecycle (a run is one execution of a workflow, started by a fire).

Pure: statuses, the events the run scripts write, and the rules that move a run from
one status to the next. ``store/runs.lua`` and ``ticker/fire.lua`` enforce these rules
atomically in Redis; the contract test runs one table of transitions against both.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.domain.events import Event, register
from service.domain.retry import retry_delay_ms, should_retry
from service.domain.workflow import RetryPolicy


class RunStatus(StrEnum):
    BUFFERED = "buffered"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
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


class RunOutcome(StrEnum):
    """How an attempt ends (the ``finish`` outcomes of the run script)."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"
    TIMED_OUT = "timedout"
    CANCELLED = "cancelled"
    DEAD_LETTERED = "deadlettered"


# -- the attempt's outcome ---------------------------------------------------------------


@dataclass(frozen=True)
class AttemptVerdict:
    outcome: RunOutcome
    retry_at_ms: int | None = None  # set when outcome is RETRY


@dataclass(frozen=True)
class _End:
    ok: bool
    retryable: bool


def attempt_verdict(
    *,
    ok: bool,
    retryable: bool,
    timed_out: bool,
    stopped: bool,
    cancel_requested: bool,
    cooperative: bool,
    attempt: int,
    retry: RetryPolicy | None,
    retry_after_s: float | None,
    now_ms: int,
    rand: float,
) -> AttemptVerdict:
    """How attempt ``attempt`` of a run ends.

    ``stopped``: the attempt ended because it was cancelled or terminated.
    ``cooperative``: the target sees cancel requests (a Python handler), so a handler
    that returns once asked to cancel has cancelled; a webhook that answered 2xx did
    its work whatever was asked meanwhile. ``retry`` is None when the workflow is
    gone: nothing to retry with. ``rand`` in [0, 1) spreads the retry delay.
    """
    asked = cancel_requested and (cooperative or not ok)
    if ok and not asked:
        return AttemptVerdict(RunOutcome.SUCCEEDED)
    if asked or stopped:
        return AttemptVerdict(RunOutcome.CANCELLED)
    if retry is not None and should_retry(retry, attempt, _End(ok, retryable)):
        delay = retry_delay_ms(retry, attempt, rand, retry_after_s)
        return AttemptVerdict(RunOutcome.RETRY, retry_at_ms=now_ms + delay)
    return AttemptVerdict(RunOutcome.TIMED_OUT if timed_out else RunOutcome.FAILED)


# -- events ------------------------------------------------------------------------------


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
