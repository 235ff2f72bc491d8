"""Recording how an attempt ended: the domain's verdict, written by the run script.

The worker decides nothing here: ``attempt_verdict`` (service/domain/runs.py) says
whether the run succeeded, retries (and when), failed, timed out or was cancelled;
this module turns the verdict into the run script's ``finish`` call, counts it, and
pauses a schedule whose policy asks for that after a failed scheduled run.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from service import telemetry
from service.activity import ActivityLog
from service.commands import SCHEDULES, CommandService, RequestContext
from service.domain import namespaces
from service.domain import schedule as sched
from service.domain.runs import (
    FAILED_STATUSES,
    OUTCOME_EVENTS,
    AttemptVerdict,
    RunAttemptFailed,
    RunEvent,
    RunStatus,
    attempt_verdict,
)
from service.domain.timeutil import to_rfc3339
from service.domain.workflow import WorkflowConfig
from service.store.runs import RunStore, StartedAttempt
from service.worker.attempt import sees_cancel
from service.worker.state import QueueEntry, WorkerStats
from service.worker.targets.base import AttemptResult, RunContext

log = logging.getLogger(__name__)
activity = ActivityLog(logging.getLogger("cronstream.runs"))


class Outcomes:
    def __init__(
        self,
        runs: RunStore,
        commands: CommandService,
        *,
        actor: str,
        stats: WorkerStats,
        now_ms: Callable[[], int],
    ) -> None:
        self.runs = runs
        self.commands = commands
        self.actor = actor
        self.stats = stats
        self.now_ms = now_ms

    async def record(
        self,
        entry: QueueEntry,
        started: StartedAttempt,
        ctx: RunContext,
        workflow: WorkflowConfig | None,
        result: AttemptResult,
    ) -> None:
        now = self.now_ms()
        verdict = attempt_verdict(
            ok=result.ok,
            retryable=result.retryable,
            timed_out=result.timed_out,
            stopped=result.stopped,
            cancel_requested=ctx.cancelled.is_set(),
            cooperative=sees_cancel(workflow),
            attempt=started.attempt,
            retry=workflow.retry if workflow is not None else None,
            retry_after_s=result.retry_after_s,
            now_ms=now,
            rand=random.random(),
        )
        attempt_data, final_data = _event_data(verdict, ctx, started, result, now)
        status, _ = await self.runs.finish(
            entry.partition,
            entry.sid,
            entry.kind,
            ctx.run_id,
            outcome=verdict.outcome.value,
            meta={"actor": self.actor},
            now_ms=now,
            token=started.token,
            entry_id=entry.entry_id,
            attempt_data=attempt_data,
            final_data=final_data,
            retry_at_ms=verdict.retry_at_ms or 0,
        )
        self._count(verdict, status, result, ctx)
        if status == "OK":
            _tell(verdict, ctx, result)
        if status != "STALE" and verdict.outcome.status in FAILED_STATUSES:
            await self._pause_on_failure(entry, ctx, verdict.outcome.status)

    def _count(
        self, verdict: AttemptVerdict, status: str, result: AttemptResult, ctx: RunContext
    ) -> None:
        after = verdict.outcome.status
        namespace = namespaces.namespace_of(ctx.workflow_id)
        telemetry.ATTEMPTS.labels("succeeded" if result.ok else "failed", namespace).inc()
        if status == "OK":
            if after is RunStatus.RETRYING:
                telemetry.RETRIES.inc()
            else:
                telemetry.RUNS.labels(verdict.outcome.value, ctx.trigger, namespace).inc()
        if status == "STALE":
            self.stats.refused += 1
            log.warning(
                "run %s: completion refused (reclaimed by another worker)",
                ctx.run_id,
                extra={"run_id": ctx.run_id, "schedule_id": ctx.schedule_id},
            )
        elif after is RunStatus.SUCCEEDED:
            self.stats.succeeded += 1
        elif after is RunStatus.RETRYING:
            self.stats.retried += 1
        elif after in FAILED_STATUSES:
            self.stats.failed += 1

    async def _pause_on_failure(
        self, entry: QueueEntry, ctx: RunContext, run_status: RunStatus
    ) -> None:
        if entry.kind != "schedule":
            return  # a workflow's own run: no schedule to pause
        state, _ = await self.commands.load(SCHEDULES, entry.sid)
        pause = sched.pause_after_run(state, ctx.run_id, ctx.trigger, run_status)
        if pause is not None:
            await self.commands.execute(
                SCHEDULES, entry.sid, pause, RequestContext(actor=self.actor)
            )
            activity.warning(
                "schedule.paused",
                "schedule %s paused: run %s %s (pause_on_failure)",
                entry.sid,
                ctx.run_id,
                run_status,
                schedule_id=entry.sid,
                run_id=ctx.run_id,
            )


def _tell(verdict: AttemptVerdict, ctx: RunContext, result: AttemptResult) -> None:
    """One line for a person watching the log: a retry, a failure, a dead letter."""
    what = f"run {ctx.run_id}" + (f" of schedule {ctx.schedule_id}" if ctx.schedule_id else "")
    ids = {"run_id": ctx.run_id, "schedule_id": ctx.schedule_id}
    status = verdict.outcome.status
    if status is RunStatus.RETRYING and verdict.retry_at_ms is not None:
        at = to_rfc3339(verdict.retry_at_ms)
        activity.info(
            "run.retry",
            "%s: attempt %d failed (%s); retry at %s",
            what,
            ctx.attempt,
            result.error,
            at,
            **ids,
        )
    elif status in FAILED_STATUSES or status is RunStatus.DEAD_LETTERED:
        activity.warning(
            f"run.{status}",
            "%s %s on attempt %d: %s",
            what,
            status,
            ctx.attempt,
            result.error,
            **ids,
        )


def _event_data(
    verdict: AttemptVerdict,
    ctx: RunContext,
    started: StartedAttempt,
    result: AttemptResult,
    now_ms: int,
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(``RunAttemptFailed``'s data or None, the data of the event that ends the run).

    What the worker knows of the attempt, cut to the fields of the events the
    verdict's outcome appends (a retry appends no final event).
    """
    known: dict[str, Any] = {
        "run_id": ctx.run_id,
        "attempt": started.attempt,
        "error": result.error,
        "status": result.status,
        "body_excerpt": result.body_excerpt,
        "finished_at": to_rfc3339(now_ms),
        "reason": result.error or "cancelled",
    }
    if verdict.retry_at_ms is not None:
        known["retry_at"] = to_rfc3339(verdict.retry_at_ms)
    failed = _fields(RunAttemptFailed, known) if verdict.outcome.records_failed_attempt else None
    final = OUTCOME_EVENTS.get(verdict.outcome)
    return failed, _fields(final, known) if final is not None else {"run_id": ctx.run_id}


def _fields(event: type[RunEvent], known: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in known.items() if name in event.model_fields}
