"""APScheduler 3 jobs as cronstream workflows and schedules (API bodies, ready for a file
that ``cronstream apply`` reads).

Each job becomes a schedule; each job function (``func_ref``, ``module:function``) a
workflow whose Python target is ``call_job`` (``apscheduler_call``), which calls the
function with the args and kwargs the schedule's input carries, as APScheduler did.
What cannot be said exactly is left out, with the reason, never guessed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from service.api.models import ScheduleCreate, WorkflowPut
from service.domain.ids import is_valid_id
from service.domain.policies import CatchupPolicy, OverlapPolicy
from service.domain.timeutil import format_duration, to_rfc3339
from service.domain.types import CLIENT_INPUT
from service.importers.apscheduler_cron import Unconvertible
from service.importers.apscheduler_store import StoredJob
from service.importers.apscheduler_triggers import SpecParts, spec_parts

HANDLER = "service.importers.apscheduler_call:call_job"
TAG = "apscheduler"
DEFAULT_TIMEOUT = "1h"
CATCHUP_ALL_MAX = 10_000  # APScheduler runs every missed time within the grace: the most we keep
_INVALID = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Skipped:
    """A job that was not converted, and why."""

    job_id: str
    reason: str


@dataclass
class ImportResult:
    """The converted jobs as API bodies with ``id``, and what was left out or changed."""

    workflows: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (job id, what changed)


def cronstream_id(value: str) -> tuple[str, bool]:
    """A valid cronstream id for ``value``, and whether it had to change. An invalid one
    keeps its valid characters and gains a digest of the original, so two ids never meet."""
    if is_valid_id(value):
        return value, False
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    kept = _INVALID.sub("-", value).strip("-._")[:100]
    return (f"{kept}-{digest}" if kept else f"job-{digest}"), True


def workflow_id(func_ref: str) -> str:
    """``jobs.billing:run`` → ``jobs.billing-run`` (``:`` is no id character)."""
    return cronstream_id(func_ref.replace(":", "-"))[0]


def convert_jobs(
    jobs: list[StoredJob], now_ms: int, timeout: str = DEFAULT_TIMEOUT
) -> ImportResult:
    """Every job of a store, converted or skipped with the reason."""
    result = ImportResult()
    workflows: dict[str, dict[str, Any]] = {}
    taken: dict[str, str] = {}
    for job in jobs:
        if job.state is None:
            result.skipped.append(Skipped(job.id, job.error or "unreadable"))
            continue
        try:
            schedule, workflow, notes = convert_job(job.state, now_ms, timeout)
        except Unconvertible as exc:
            result.skipped.append(Skipped(job.id, str(exc)))
            continue
        clash = _clash(schedule, workflow, taken, workflows)
        if clash:
            result.skipped.append(Skipped(job.id, clash))
            continue
        taken[schedule["id"]] = job.id
        workflows.setdefault(workflow["id"], workflow)
        result.schedules.append(schedule)
        result.notes += [(job.id, note) for note in notes]
    result.workflows = [workflows[key] for key in sorted(workflows)]
    return result


def _clash(
    schedule: dict[str, Any],
    workflow: dict[str, Any],
    taken: dict[str, str],
    workflows: dict[str, dict[str, Any]],
) -> str | None:
    """Why a converted job cannot join the others: its ids are another job's."""
    if schedule["id"] in taken:
        return f"its id maps to {schedule['id']!r}, as job {taken[schedule['id']]!r}'s does"
    other = workflows.get(workflow["id"])
    if other is not None and other["name"] != workflow["name"]:
        return f"its function's workflow id {workflow['id']!r} is also {other['name']}'s"
    return None


def convert_job(
    state: dict[str, Any], now_ms: int, timeout: str = DEFAULT_TIMEOUT
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """One job's schedule and workflow bodies (validated by the API's models), and notes on
    what differs from APScheduler; raises ``Unconvertible`` with the reason."""
    job_id = str(state["id"])
    func_ref = state["func"]
    if not isinstance(func_ref, str) or ":" not in func_ref:
        raise Unconvertible(f"its function {func_ref!r} is not a 'module:function' reference")
    parts = spec_parts(state["trigger"], now_ms)
    _check_future(parts, state, now_ms)
    schedule_id, renamed = cronstream_id(job_id)
    notes = list(parts.notes)
    if renamed:
        notes.append(f"id {job_id!r} is not a valid cronstream id: the schedule is {schedule_id!r}")
    policy, policy_notes = _policy(state)
    schedule: dict[str, Any] = {
        "id": schedule_id,
        "name": str(state.get("name") or "")[:200],
        "description": f"Imported from APScheduler job {job_id!r}"[:2000],
        "workflow_id": workflow_id(func_ref),
        "spec": parts.body(),
        "policy": policy,
        "input": {
            "func": func_ref,
            "args": _json(state["args"], "args"),
            "kwargs": _json(state["kwargs"], "kwargs"),
        },
        "tags": [TAG],
    }
    if parts.one_off:
        schedule["max_actions"] = 1
    if state.get("next_run_time") is None:
        schedule["paused"] = True
        schedule["note"] = "paused in APScheduler (no next run time)"
    if state.get("executor", "default") != "default":
        notes.append(f"executor {state['executor']!r}: every run goes to cronstream's workers")
    _validate(ScheduleCreate, schedule)
    return schedule, _workflow(func_ref, timeout), notes + policy_notes


def _check_future(parts: SpecParts, state: dict[str, Any], now_ms: int) -> None:
    if parts.end_ms is None or parts.end_ms > now_ms:
        return
    if parts.one_off:
        raise Unconvertible(f"its run date {to_rfc3339(parts.start_ms or 0)} has passed")
    raise Unconvertible(f"it ended at {to_rfc3339(parts.end_ms)}: nothing is left to run")


def _policy(state: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """misfire_grace_time is the catch-up window; coalesce runs the latest missed time
    once, else all of them; max_instances 1 skips a time while a run is running."""
    notes: list[str] = []
    policy: dict[str, Any] = {}
    grace = state.get("misfire_grace_time")
    if grace is not None:
        policy["catchup_window"] = format_duration(max(math.ceil(grace * 1000), 0))
    if state.get("coalesce", True):
        policy["catchup"] = CatchupPolicy.LATEST.value
    else:
        policy["catchup"] = CatchupPolicy.ALL.value
        policy["catchup_max"] = CATCHUP_ALL_MAX
    instances = int(state.get("max_instances", 1))
    policy["overlap"] = (OverlapPolicy.SKIP if instances <= 1 else OverlapPolicy.ALLOW_ALL).value
    if instances > 1:
        notes.append(
            f"max_instances={instances}: cronstream has no limit of {instances} runs at once, "
            "so runs may overlap without limit (overlap: allow_all)"
        )
    return policy, notes


def _json(value: Any, where: str) -> Any:
    """``value`` as JSON (tuples become lists), or ``Unconvertible`` naming the part that is not."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unconvertible(f"{where} is {value}, which JSON cannot carry")
        return value
    if isinstance(value, list | tuple):
        return [_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise Unconvertible(f"{where} has the key {key!r}: JSON keys are text")
            out[key] = _json(item, f"{where}[{key!r}]")
        return out
    raise Unconvertible(
        f"{where} is a {type(value).__name__}: a run's input is JSON, so only None, bools, "
        "numbers, text, lists and dicts carry over"
    )


@functools.lru_cache(maxsize=4096)
def _checked_workflow(func_ref: str, timeout: str) -> str:
    """The workflow's body as JSON, validated once per function (checking its input schema
    costs more than converting a job)."""
    body = _workflow_body(func_ref, timeout)
    _validate(WorkflowPut, body)
    return json.dumps(body)


def _workflow(func_ref: str, timeout: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(_checked_workflow(func_ref, timeout))
    return loaded


def _workflow_body(func_ref: str, timeout: str) -> dict[str, Any]:
    return {
        "id": workflow_id(func_ref),
        "name": func_ref[:200],
        "description": f"Calls {func_ref} with each run's args and kwargs, as APScheduler did"[
            :2000
        ],
        "target": {"type": "python", "handler": HANDLER},
        "input_schema": {
            "type": "object",
            "properties": {
                "func": {"const": func_ref},
                "args": {"type": "array"},
                "kwargs": {"type": "object"},
            },
            "required": ["func", "args", "kwargs"],
        },
        "retry": {"max_attempts": 1},  # APScheduler runs a job once, failed or not
        "timeout": timeout,
    }


def _validate(model: type[BaseModel], body: dict[str, Any]) -> None:
    """Check a body with the API's own model, as the API and ``apply`` will."""
    try:
        model.model_validate(body, context=CLIENT_INPUT)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Unconvertible(f"{where}: {first['msg']}") from None
