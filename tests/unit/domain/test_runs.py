"""The run aggregate: statuses, events, decide/evolve and the attempt verdict (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain import runs
from service.domain.events import EVENT_TYPES
from service.domain.runs import (
    AttemptVerdict,
    Cancel,
    CancelMode,
    Create,
    Finish,
    Release,
    Reply,
    Requeue,
    Revive,
    Run,
    RunCommand,
    RunOutcome,
    RunStatus,
    Start,
    attempt_verdict,
    decide,
    evolve,
    parse_event,
)
from service.domain.workflow import RetryPolicy

NOW = 1_768_478_400_000
POLICY = RetryPolicy(max_attempts=3, initial_interval="1s", max_interval="10s", backoff=2.0)


def verdict(**given: Any) -> AttemptVerdict:
    args: dict[str, Any] = {
        "ok": False,
        "retryable": True,
        "timed_out": False,
        "stopped": False,
        "cancel_requested": False,
        "cooperative": False,
        "attempt": 1,
        "retry": POLICY,
        "retry_after_s": None,
        "now_ms": NOW,
        "rand": 0.0,
    }
    return attempt_verdict(**{**args, **given})


# -- the attempt verdict -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "outcome"),
    [
        ({"ok": True}, RunOutcome.SUCCEEDED),
        # a webhook that answered 2xx did its work whatever was asked meanwhile
        ({"ok": True, "cancel_requested": True}, RunOutcome.SUCCEEDED),
        # a handler that returns once asked to cancel has cancelled
        ({"ok": True, "cancel_requested": True, "cooperative": True}, RunOutcome.CANCELLED),
        ({"cancel_requested": True}, RunOutcome.CANCELLED),
        ({"stopped": True}, RunOutcome.CANCELLED),
        ({"stopped": True, "retryable": False}, RunOutcome.CANCELLED),
        ({"retryable": False}, RunOutcome.FAILED),
        ({"retryable": False, "timed_out": True}, RunOutcome.TIMED_OUT),
        ({"attempt": 3}, RunOutcome.FAILED),  # the last attempt of three
        ({"attempt": 3, "timed_out": True}, RunOutcome.TIMED_OUT),
        ({"retry": None}, RunOutcome.FAILED),  # the workflow is gone
    ],
)
def test_the_verdict_of_an_attempt(given: dict[str, Any], outcome: RunOutcome) -> None:
    result = verdict(**given)
    assert result == AttemptVerdict(outcome)


def test_a_retryable_failure_before_the_last_attempt_retries_after_the_backoff() -> None:
    assert verdict(attempt=2) == AttemptVerdict(RunOutcome.RETRY, retry_at_ms=NOW + 1000)
    assert verdict(attempt=2, rand=0.999999) == AttemptVerdict(RunOutcome.RETRY, NOW + 2000)
    timed_out = verdict(attempt=1, timed_out=True, retry_after_s=30)
    assert timed_out == AttemptVerdict(RunOutcome.RETRY, retry_at_ms=NOW + 30_000)


@given(
    ok=st.booleans(),
    retryable=st.booleans(),
    timed_out=st.booleans(),
    stopped=st.booleans(),
    cancel_requested=st.booleans(),
    cooperative=st.booleans(),
    attempt=st.integers(1, 5),
    rand=st.floats(0, 1, exclude_max=True),
)
def test_only_a_retry_has_a_retry_time_and_it_is_in_the_future(**given: Any) -> None:
    result = verdict(**given)
    assert (result.retry_at_ms is not None) == (result.outcome is RunOutcome.RETRY)
    assert result.retry_at_ms is None or result.retry_at_ms > NOW


# -- statuses and outcomes ---------------------------------------------------------------


def test_retrying_is_a_status_and_not_a_terminal_one() -> None:
    assert RunStatus("retrying") is RunStatus.RETRYING
    assert RunStatus.RETRYING not in runs.TERMINAL_STATUSES
    assert runs.REVIVABLE_STATUSES < runs.TERMINAL_STATUSES
    assert not runs.IN_FLIGHT_STATUSES & runs.TERMINAL_STATUSES


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (RunOutcome.SUCCEEDED, RunStatus.SUCCEEDED),
        (RunOutcome.RETRY, RunStatus.RETRYING),
        (RunOutcome.FAILED, RunStatus.FAILED),
        (RunOutcome.TIMED_OUT, RunStatus.TIMED_OUT),
        (RunOutcome.CANCELLED, RunStatus.CANCELLED),
        (RunOutcome.DEAD_LETTERED, RunStatus.DEAD_LETTERED),
    ],
)
def test_each_outcome_leads_to_one_status(outcome: RunOutcome, status: RunStatus) -> None:
    assert outcome.status is status
    event = runs.OUTCOME_EVENTS.get(outcome)
    assert (event is None) == (outcome is RunOutcome.RETRY)
    assert event is None or runs.FINAL_EVENTS[event] is status


# -- events as the scripts and the worker write them -------------------------------------

LOGGED: list[tuple[str, dict[str, Any]]] = [
    (
        "RunQueued",
        {
            "run_id": "r",
            "schedule_id": "s",
            "workflow_id": "w",
            "trigger": {"type": "schedule", "source": "", "label": ""},
            "nominal_time": "2026-01-15T12:00:00Z",
            "input": {"n": 1},
        },
    ),
    (
        "RunQueued",
        {
            "run_id": "r",
            "schedule_id": None,
            "workflow_id": "w",
            "trigger": {"type": "api", "source": "key:k", "label": ""},
            "nominal_time": None,
            "input": None,
        },
    ),
    ("RunStarted", {"run_id": "r", "attempt": 1, "worker": "h:1", "started_at": "t"}),
    (
        "RunAttemptFailed",
        {
            "run_id": "r",
            "attempt": 1,
            "error": "HTTP 500",
            "status": 500,
            "body_excerpt": "oops",
            "finished_at": "2026-01-15T12:00:01.250Z",
            "retry_at": "2026-01-15T12:00:02.250Z",
        },
    ),
    ("RunAttemptFailed", {"run_id": "r", "attempt": 1, "error": "boom", "retry_at": None}),
    (
        "RunSucceeded",
        {
            "run_id": "r",
            "attempt": 2,
            "error": None,
            "status": 200,
            "body_excerpt": "",
            "finished_at": "2026-01-15T12:00:03Z",
        },
    ),
    ("RunSucceeded", {"run_id": "r", "attempt": 0}),  # a fire with no target
    ("RunSucceeded", {"run_id": "r"}),
    ("RunFailed", {"run_id": "r", "attempt": 3, "error": "HTTP 410", "status": 410}),
    ("RunTimedOut", {"run_id": "r", "attempt": 3, "error": "timed out after 1s"}),
    ("RunCancelled", {"run_id": "r", "reason": "cancelled before start"}),
    ("RunDeadLettered", {"run_id": "r", "reason": "delivered 5 times", "deliveries": 5}),
    ("RunDeadLettered", {"run_id": "r", "reason": "test"}),
    ("RunCancelRequested", {"run_id": "r", "requested_by": "key:k", "terminate": True}),
    ("RunRequeued", {"run_id": "r", "requested_by": "key:k"}),
]


@pytest.mark.parametrize(("event_type", "data"), LOGGED)
def test_every_run_event_shape_in_the_log_is_typed(event_type: str, data: dict[str, Any]) -> None:
    event = parse_event(event_type, data)
    assert event is not None and event.type_name() == event_type
    assert EVENT_TYPES[event_type] is type(event)
    assert event.run_id == "r"


def test_a_run_event_with_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="extra"):
        parse_event("RunRequeued", {"run_id": "r", "requested_by": "k", "why": "?"})


def test_events_of_other_aggregates_are_not_run_events() -> None:
    assert parse_event("ScheduleFired", {"run_id": "r"}) is None


# -- decide and evolve -------------------------------------------------------------------

QUEUED = Run(RunStatus.QUEUED)
RUNNING = Run(RunStatus.RUNNING, attempt=1)


@pytest.mark.parametrize(
    ("run", "command", "reply", "status", "events"),
    [
        (None, Create(), Reply.OK, RunStatus.QUEUED, ["RunQueued"]),
        (QUEUED, Create(), Reply.EXISTS, RunStatus.QUEUED, []),
        (QUEUED, Start(0, 5), Reply.OK, RunStatus.RUNNING, ["RunStarted"]),
        (RUNNING, Start(1, 5), Reply.OK, RunStatus.RUNNING, ["RunStarted"]),  # reclaimed
        (RUNNING, Start(5, 5), Reply.DEAD, RunStatus.DEAD_LETTERED, ["RunDeadLettered"]),
        (Run(RunStatus.RETRYING, 1), Start(0, 5), Reply.DONE, RunStatus.RETRYING, []),
        (Run(RunStatus.QUEUED, 0, CancelMode.CANCEL), Start(0, 5), Reply.CANCELLED,
         RunStatus.CANCELLED, ["RunCancelled"]),
        (RUNNING, Finish(RunOutcome.SUCCEEDED, 1), Reply.OK, RunStatus.SUCCEEDED,
         ["RunSucceeded"]),
        (RUNNING, Finish(RunOutcome.RETRY, 1), Reply.OK, RunStatus.RETRYING,
         ["RunAttemptFailed"]),
        (RUNNING, Finish(RunOutcome.FAILED, 1), Reply.OK, RunStatus.FAILED,
         ["RunAttemptFailed", "RunFailed"]),
        (RUNNING, Finish(RunOutcome.SUCCEEDED, 2), Reply.STALE, RunStatus.RUNNING, []),
        (QUEUED, Finish(RunOutcome.SUCCEEDED, 1), Reply.STALE, RunStatus.QUEUED, []),
        (QUEUED, Finish(RunOutcome.SUCCEEDED), Reply.OK, RunStatus.SUCCEEDED, ["RunSucceeded"]),
        (Run(RunStatus.FAILED, 1), Finish(RunOutcome.SUCCEEDED), Reply.DONE, RunStatus.FAILED,
         []),
        (RUNNING, Cancel(), Reply.REQUESTED, RunStatus.RUNNING, ["RunCancelRequested"]),
        (Run(RunStatus.RUNNING, 1, CancelMode.CANCEL), Cancel(CancelMode.TERMINATE),
         Reply.REQUESTED, RunStatus.RUNNING, ["RunCancelRequested"]),
        (Run(RunStatus.RUNNING, 1, CancelMode.TERMINATE), Cancel(), Reply.REQUESTED,
         RunStatus.RUNNING, []),
        (QUEUED, Cancel(), Reply.CANCELLED, RunStatus.CANCELLED, ["RunCancelled"]),
        (Run(RunStatus.SUCCEEDED), Cancel(), Reply.DONE, RunStatus.SUCCEEDED, []),
        (Run(RunStatus.RETRYING, 1), Requeue(), Reply.OK, RunStatus.QUEUED, []),
        (Run(RunStatus.BUFFERED), Release(), Reply.OK, RunStatus.QUEUED, ["RunQueued"]),
        (Run(RunStatus.TIMED_OUT, 2), Revive(), Reply.OK, RunStatus.QUEUED, ["RunRequeued"]),
        (Run(RunStatus.SUCCEEDED, 2), Revive(), Reply.NOT_DEAD, RunStatus.SUCCEEDED, []),
        (None, Revive(), Reply.GONE, None, []),
    ],
)  # fmt: skip
def test_decide(
    run: Run | None,
    command: RunCommand,
    reply: Reply,
    status: RunStatus | None,
    events: list[str],
) -> None:
    decision = decide(run, command)
    assert decision.reply is reply
    assert (decision.run.status if decision.run else None) is status
    assert [e.type_name() for e in decision.events] == events
    assert decision.refused == (
        reply in {Reply.GONE, Reply.DONE, Reply.STALE, Reply.NOT_DEAD, Reply.EXISTS}
    )


def test_a_revived_run_forgets_the_cancel_asked_and_keeps_its_attempts() -> None:
    dead = Run(RunStatus.DEAD_LETTERED, attempt=4, cancel=CancelMode.TERMINATE)
    assert decide(dead, Revive()).run == Run(RunStatus.QUEUED, attempt=4)


def _event(cls: type[runs.RunEvent], command: RunCommand, after: Run | None) -> runs.RunEvent:
    """An event of type ``cls`` as the script would write it for ``command``."""
    data: dict[str, Any] = {"run_id": "r"}
    if cls is runs.RunQueued:
        trigger = {"type": "api", "source": "", "label": ""}
        data.update(schedule_id=None, workflow_id="w", trigger=trigger, nominal_time=None)
    elif cls is runs.RunStarted:
        assert after is not None
        data.update(attempt=after.attempt, worker="w", started_at="t")
    elif cls is runs.RunAttemptFailed and isinstance(command, Finish):
        retry = command.outcome is RunOutcome.RETRY
        data.update(retry_at="2026-01-15T12:00:00Z" if retry else None)
    elif cls is runs.RunCancelRequested and isinstance(command, Cancel):
        data.update(requested_by="k", terminate=command.mode is CancelMode.TERMINATE)
    elif cls is runs.RunRequeued:
        data.update(requested_by="k")
    return cls.model_validate(data)


RUNS = st.builds(
    Run,
    st.sampled_from(RunStatus),
    st.integers(0, 5),
    st.none() | st.sampled_from(CancelMode),
)
COMMANDS: st.SearchStrategy[RunCommand] = st.one_of(
    st.builds(Create),
    st.builds(Start, st.integers(0, 6), st.integers(1, 5)),
    st.builds(Finish, st.sampled_from(RunOutcome), st.none() | st.integers(0, 6)),
    st.builds(Cancel, st.sampled_from(CancelMode)),
    st.builds(Requeue),
    st.builds(Release),
    st.builds(Revive),
)


@given(run=st.none() | RUNS, command=COMMANDS)
def test_the_log_a_decision_writes_tells_the_status_it_decided(
    run: Run | None, command: RunCommand
) -> None:
    decision = decide(run, command)
    if decision.refused:
        assert decision.run == run and not decision.events
    state = run
    for cls in decision.events:
        state = evolve(state, _event(cls, command, decision.run))
    if decision.events:
        assert state == decision.run
    elif not decision.refused and decision.reply is Reply.OK:
        # a due retry is the one change the log does not show
        assert isinstance(command, Requeue)
        assert decision.run == Run(RunStatus.QUEUED, *_rest(run))
    else:
        assert decision.run == run  # refused, or a cancel asked already


def _rest(run: Run | None) -> tuple[int, CancelMode | None]:
    assert run is not None
    return run.attempt, run.cancel


@given(run=RUNS, command=COMMANDS)
def test_a_finished_run_changes_only_by_a_revive(run: Run, command: RunCommand) -> None:
    if run.status not in runs.TERMINAL_STATUSES or isinstance(command, Revive):
        return
    decision = decide(run, command)
    assert decision.refused and decision.run == run


def test_evolve_follows_a_run_through_its_life() -> None:
    history = [
        (name, data)
        for name, data in LOGGED
        if name in ("RunQueued", "RunStarted", "RunAttemptFailed", "RunCancelRequested")
    ]
    state = runs.fold([e for e in (parse_event(n, d) for n, d in history) if e is not None])
    assert state == Run(RunStatus.RETRYING, attempt=1, cancel=CancelMode.TERMINATE)
    requeued = runs.RunRequeued(run_id="r", requested_by="k")
    revived = evolve(Run(RunStatus.FAILED, 3, CancelMode.CANCEL), requeued)
    assert revived == Run(RunStatus.QUEUED, 3)
    assert evolve(None, runs.RunStarted(run_id="r", attempt=1, worker="w", started_at="t")) is None
