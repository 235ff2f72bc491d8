"""The Run aggregate: one execution of a workflow, started by a fire or a run-now.

Pure: the statuses, the events the run and fire scripts write, ``decide(run, command)
-> Decision`` (the rules the run script, ``runs.lua``, enforces atomically in Redis),
``evolve(run, event) -> run`` (what the log says of a run, for the views, the
write-model rebuild and the audit trail), and the outcome of an attempt
(``attempt_verdict``, which the worker applies). The contract test runs one table of
transitions against ``decide`` and against the script, so the two cannot drift.

A run's life::

    buffered --RunQueued--> queued --RunStarted--> running --RunSucceeded--> succeeded
                              ^                     |  --RunFailed, RunTimedOut--> failed, timedout
                              |                     |  --RunCancelled--> cancelled
                              |                     |  --RunDeadLettered--> deadlettered
                              +--(due)-- retrying <-+  (RunAttemptFailed with a retry time)
    failed, timedout, deadlettered --RunRequeued--> queued
    buffered, queued, retrying --RunCancelled--> cancelled (nothing to stop)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from service.domain.events import Event, register
from service.domain.retry import retry_delay_ms, should_retry
from service.domain.workflow import RetryPolicy


class RunStatus(StrEnum):
    BUFFERED = "buffered"  # held back by the schedule's overlap policy
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"  # an attempt failed; the next one waits for its retry time
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
"""A run in one of these is finished: nothing but a revive changes it again."""

REVIVABLE_STATUSES = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.DEAD_LETTERED})
"""A run in one of these can be queued again (``POST /v1/runs/{id}/retry``)."""

FAILED_STATUSES = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT})
"""A run left in one of these failed (after its retries): what ``pause_on_failure`` reacts to."""

IN_FLIGHT_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.RETRYING})
"""Runs that hold their schedule's overlap slot (a buffered run waits for it)."""

UNSTARTABLE_STATUSES = TERMINAL_STATUSES | {RunStatus.RETRYING}
"""A queue entry of a run in one of these is acknowledged without an attempt: the run
is finished, or its next attempt comes from the retry timers."""


class CancelMode(StrEnum):
    CANCEL = "cancel"  # ask the attempt to stop
    TERMINATE = "terminate"  # stop it without asking


class RunOutcome(StrEnum):
    """How an attempt ends (the ``finish`` outcomes of the run script)."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"
    TIMED_OUT = "timedout"
    CANCELLED = "cancelled"
    DEAD_LETTERED = "deadlettered"

    @property
    def status(self) -> RunStatus:
        """The run's status after an attempt ends so."""
        return RunStatus.RETRYING if self is RunOutcome.RETRY else RunStatus(self.value)

    @property
    def records_failed_attempt(self) -> bool:
        """Whether the attempt is recorded as failed (``RunAttemptFailed``) first."""
        return self in (RunOutcome.RETRY, RunOutcome.FAILED, RunOutcome.TIMED_OUT)


# -- events ------------------------------------------------------------------------------


class Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str  # schedule | manual | api | backfill
    source: str
    label: str = ""


class RunEvent(Event):
    """Base of the run events: every one names its run.

    Times in a run event's data are RFC 3339 text as the writer rendered it (the
    event's own append time is the log's): they are kept as text, not parsed, so that
    reading a run event stays cheap for the views that fold every one of them.
    """

    aggregate = "schedule"
    run_id: str


@register
class RunQueued(RunEvent):
    """Queued: created (fired or run now), or released from its schedule's buffer."""

    schedule_id: str | None
    workflow_id: str
    trigger: Trigger
    nominal_time: str | None  # RFC 3339; None for a run now
    input: object = None


@register
class RunStarted(RunEvent):
    attempt: int
    worker: str
    started_at: str  # as the worker handed it to the script (RFC 3339)


class _AttemptEnd(RunEvent):
    """An attempt's report, as the worker writes it (``attempt`` 0: no attempt made)."""

    attempt: int = 0
    error: str | None = None
    status: int | None = None  # the target's HTTP status
    body_excerpt: str | None = None
    finished_at: str | None = None


@register
class RunAttemptFailed(_AttemptEnd):
    retry_at: str | None = None  # RFC 3339, set when another attempt follows


@register
class RunSucceeded(_AttemptEnd):
    pass


@register
class RunFailed(_AttemptEnd):
    pass


@register
class RunTimedOut(_AttemptEnd):
    pass


@register
class RunCancelled(RunEvent):
    reason: str = ""


@register
class RunDeadLettered(RunEvent):
    reason: str = ""
    deliveries: int | None = None  # set when too many deliveries brought no result


@register
class RunCancelRequested(RunEvent):
    requested_by: str  # who asked, or the run whose fire cancels this one
    terminate: bool


@register
class RunRequeued(RunEvent):
    requested_by: str


FINAL_EVENTS: dict[type[RunEvent], RunStatus] = {
    RunSucceeded: RunStatus.SUCCEEDED,
    RunFailed: RunStatus.FAILED,
    RunTimedOut: RunStatus.TIMED_OUT,
    RunCancelled: RunStatus.CANCELLED,
    RunDeadLettered: RunStatus.DEAD_LETTERED,
}
"""The event that finishes a run, and the status it leaves."""

OUTCOME_EVENTS: dict[RunOutcome, type[RunEvent]] = {
    RunOutcome(status.value): event for event, status in FINAL_EVENTS.items()
}
"""The event a finishing outcome appends (a retry appends only ``RunAttemptFailed``)."""

_ALL: tuple[type[RunEvent], ...] = (
    RunQueued,
    RunStarted,
    RunAttemptFailed,
    *FINAL_EVENTS,
    RunCancelRequested,
    RunRequeued,
)
RUN_EVENTS: dict[str, type[RunEvent]] = {cls.type_name(): cls for cls in _ALL}
"""Every run event by type name."""


def parse_event(event_type: str, data: dict[str, object]) -> RunEvent | None:
    """The typed run event of a logged one (None if ``event_type`` is not a run event)."""
    cls = RUN_EVENTS.get(event_type)
    return None if cls is None else cls.model_validate(data)


# -- the aggregate -----------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What the lifecycle rules look at: the status, the attempt count, a cancel asked."""

    status: RunStatus
    attempt: int = 0
    cancel: CancelMode | None = None  # asked while running (or of a queued run by a fire)

    def moved(self, status: RunStatus) -> Run:
        return Run(status, self.attempt, self.cancel)


def evolve(run: Run | None, event: RunEvent) -> Run | None:
    """The run after ``event``, as the log tells it (a run starts with ``RunQueued``)."""
    if isinstance(event, RunQueued):
        # released from a buffer keeps what it had; a new run starts afresh
        return Run(RunStatus.QUEUED) if run is None else run.moved(RunStatus.QUEUED)
    if run is None:
        return None
    match event:
        case RunStarted():
            return Run(RunStatus.RUNNING, event.attempt, run.cancel)
        case RunAttemptFailed():
            return run.moved(RunStatus.RETRYING) if event.retry_at else run
        case RunCancelRequested():
            mode = CancelMode.TERMINATE if event.terminate else CancelMode.CANCEL
            return Run(run.status, run.attempt, mode)
        case RunRequeued():
            return Run(RunStatus.QUEUED, run.attempt)
    final = FINAL_EVENTS.get(type(event))
    return run if final is None else run.moved(final)


def fold(events: list[RunEvent], run: Run | None = None) -> Run | None:
    for event in events:
        run = evolve(run, event)
    return run


# -- decisions (what the run script does) ------------------------------------------------


class Reply(StrEnum):
    """The run script's first reply field."""

    OK = "OK"
    CANCELLED = "CANCELLED"
    DEAD = "DEAD"
    REQUESTED = "REQUESTED"  # the running attempt is asked to stop
    # refusals: nothing changes
    GONE = "GONE"  # no such run
    DONE = "DONE"  # finished already (or waiting for a retry, for a start)
    STALE = "STALE"  # an attempt token that is no longer the run's
    NOT_DEAD = "NOT_DEAD"  # not a run that can be revived
    EXISTS = "EXISTS"


REFUSALS = frozenset({Reply.GONE, Reply.DONE, Reply.STALE, Reply.NOT_DEAD, Reply.EXISTS})


@dataclass(frozen=True)
class Create:
    """Queue a new run (run now, or a fire)."""


@dataclass(frozen=True)
class Start:
    """Start an attempt for a delivery of the run's queue entry."""

    deliveries: int  # deliveries of the entry before this one
    max_deliveries: int


@dataclass(frozen=True)
class Finish:
    """Record how the attempt ended. ``attempt``: the attempt the worker was handed,
    None for whichever is open (an attempt's result counts only while it is the run's
    open attempt)."""

    outcome: RunOutcome
    attempt: int | None = None


@dataclass(frozen=True)
class Cancel:
    mode: CancelMode = CancelMode.CANCEL


@dataclass(frozen=True)
class Requeue:
    """The run's retry time came."""


@dataclass(frozen=True)
class Release:
    """The schedule's slot freed: the run held back in its buffer goes."""


@dataclass(frozen=True)
class Revive:
    """Queue a failed, timed-out or dead-lettered run again."""


RunCommand = Create | Start | Finish | Cancel | Requeue | Release | Revive


@dataclass(frozen=True)
class Decision:
    reply: Reply
    run: Run | None
    events: tuple[type[RunEvent], ...] = ()

    @property
    def refused(self) -> bool:
        return self.reply in REFUSALS


def decide(run: Run | None, command: RunCommand) -> Decision:
    """What ``command`` does to ``run``: the reply, the run after, the events appended."""
    if isinstance(command, Create):
        if run is not None:
            return Decision(Reply.EXISTS, run)
        return Decision(Reply.OK, Run(RunStatus.QUEUED), (RunQueued,))
    if run is None:
        return Decision(Reply.GONE, None)
    match command:
        case Start():
            return _start(run, command)
        case Finish():
            return _finish(run, command)
        case Cancel():
            return _cancel(run, command)
        case Requeue() | Release():
            return _requeue(run, command)
        case Revive():
            return _revive(run)
    raise TypeError(f"not a run command: {command!r}")


def _start(run: Run, command: Start) -> Decision:
    if run.status in UNSTARTABLE_STATUSES:
        return Decision(Reply.DONE, run)
    if run.cancel is not None:
        return Decision(Reply.CANCELLED, run.moved(RunStatus.CANCELLED), (RunCancelled,))
    if command.deliveries + 1 > command.max_deliveries:
        dead = run.moved(RunStatus.DEAD_LETTERED)
        return Decision(Reply.DEAD, dead, (RunDeadLettered,))
    started = Run(RunStatus.RUNNING, run.attempt + 1, run.cancel)
    return Decision(Reply.OK, started, (RunStarted,))


def _finish(run: Run, command: Finish) -> Decision:
    open_attempt = run.status is RunStatus.RUNNING and command.attempt == run.attempt
    if command.attempt is not None and not open_attempt:
        return Decision(Reply.STALE, run)
    if run.status in TERMINAL_STATUSES:
        return Decision(Reply.DONE, run)
    outcome = command.outcome
    events: list[type[RunEvent]] = [RunAttemptFailed] if outcome.records_failed_attempt else []
    if outcome is not RunOutcome.RETRY:
        events.append(OUTCOME_EVENTS[outcome])
    return Decision(Reply.OK, run.moved(outcome.status), tuple(events))


def _cancel(run: Run, command: Cancel) -> Decision:
    if run.status in TERMINAL_STATUSES:
        return Decision(Reply.DONE, run)
    if run.status is RunStatus.RUNNING:
        if run.cancel in (command.mode, CancelMode.TERMINATE):
            return Decision(Reply.REQUESTED, run)  # asked already (terminating asks all)
        asked = Run(run.status, run.attempt, command.mode)
        return Decision(Reply.REQUESTED, asked, (RunCancelRequested,))
    # queued, buffered or waiting for a retry: no attempt to stop, it ends here
    return Decision(Reply.CANCELLED, run.moved(RunStatus.CANCELLED), (RunCancelled,))


def _requeue(run: Run, command: Requeue | Release) -> Decision:
    waiting = RunStatus.RETRYING if isinstance(command, Requeue) else RunStatus.BUFFERED
    if run.status is not waiting:
        return Decision(Reply.DONE, run)
    events: tuple[type[RunEvent], ...] = () if isinstance(command, Requeue) else (RunQueued,)
    return Decision(Reply.OK, run.moved(RunStatus.QUEUED), events)


def _revive(run: Run) -> Decision:
    if run.status not in REVIVABLE_STATUSES:
        return Decision(Reply.NOT_DEAD, run)
    return Decision(Reply.OK, Run(RunStatus.QUEUED, run.attempt), (RunRequeued,))


def frees_slot(before: Run | None, after: Run | None) -> bool:
    """Whether a step gave up the run's place among its schedule's runs in flight (the
    script then releases the oldest held run once no other run holds the slot)."""
    if before is None or after is None:
        return False
    return before.status in IN_FLIGHT_STATUSES and after.status not in IN_FLIGHT_STATUSES


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
