"""The Schedule aggregate: when a workflow runs, with its policies.

``decide(state, command) -> events`` and ``evolve(state, event) -> state`` are
pure: no Redis, no clock. The store persists what ``evolve`` returns next to the
events, atomically, so the write model never drifts from the log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from service.domain.events import Event, register
from service.domain.ids import ID_PATTERN, is_internal_id, is_valid_id
from service.domain.managed import Managed, MaybeManaged
from service.domain.policies import CatchupPolicy, OverlapPolicy, ScheduleStatus
from service.domain.runs import FAILED_STATUSES, RunStatus
from service.domain.spec import Spec
from service.domain.types import Duration
from service.domain.workflow import changed_fields
from service.errors import AlreadyExists, ScheduleNotFound

KIND = "schedule"
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/=-]{0,63}$"


class SchedulePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup: CatchupPolicy = CatchupPolicy.LATEST
    catchup_window: Duration = 365 * 86_400_000
    catchup_max: int = Field(default=100, ge=1, le=10_000)
    buffer_max: int = Field(default=100, ge=1, le=10_000)
    pause_on_failure: bool = False


class ScheduleConfig(BaseModel):
    """What a client sets on a schedule (everything but identity and status)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2000)
    # a client names a workflow of its own namespace by its bare id; kept qualified
    # (``NS/ID`` outside ``default``, see domain/namespaces.py), so loading it needs no namespace
    workflow_id: str = Field(json_schema_extra={"pattern": ID_PATTERN})
    spec: Spec
    policy: SchedulePolicy = Field(default_factory=SchedulePolicy)
    input: Any = None
    max_actions: int | None = Field(default=None, ge=1)
    tags: list[str] = Field(default_factory=list, max_length=32)

    @field_validator("workflow_id")
    @classmethod
    def _workflow_id(cls, value: str, info: ValidationInfo) -> str:
        from_client = bool(info.context and info.context.get("client_input"))
        if not (is_valid_id(value) if from_client else is_internal_id(value)):
            raise ValueError(f"String should match pattern '{ID_PATTERN}'")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not re.fullmatch(TAG_PATTERN, tag):
                raise ValueError(f"tag {tag!r} must match {TAG_PATTERN}")
        return sorted(set(value))


@register
class ScheduleCreated(MaybeManaged):
    aggregate = KIND
    schedule: ScheduleConfig
    paused: bool = False
    note: str = ""


@register
class ScheduleUpdated(MaybeManaged):
    aggregate = KIND
    schedule: ScheduleConfig
    changed: list[str]


class PauseCause(StrEnum):
    """Why a schedule was paused."""

    MANUAL = "manual"  # a person or program asked (API, CLI)
    RUN_FAILED = "run_failed"  # pause_on_failure: a scheduled run failed after its retries


@register
class SchedulePaused(MaybeManaged):
    """v2 (was v1 ``{note}``): says why, so "paused by a failure" is a fact, not a note.

    v1 events are upcast by ``service.domain.upcasters``.
    """

    version = 2
    aggregate = KIND
    note: str = ""
    cause: PauseCause = PauseCause.MANUAL
    run_id: str | None = None  # the failed run, when cause is run_failed


@register
class ScheduleResumed(MaybeManaged):
    aggregate = KIND
    note: str = ""


@register
class ScheduleDeleted(MaybeManaged):
    aggregate = KIND
    note: str = ""


@dataclass(frozen=True)
class ScheduleState:
    id: str
    config: ScheduleConfig
    status: ScheduleStatus = ScheduleStatus.ACTIVE
    note: str = ""
    deleted: bool = False
    managed: Managed | None = None  # kept by a file (service/manifests)
    declared: ScheduleConfig | None = None  # what the file said when last applied
    declared_paused: bool = False
    paused_by_failure: bool = False  # paused by pause_on_failure, not by a person

    @property
    def live(self) -> bool:
        return not self.deleted


@dataclass(frozen=True)
class CreateSchedule:
    schedule_id: str
    config: ScheduleConfig
    paused: bool = False
    note: str = ""


@dataclass(frozen=True)
class UpdateSchedule:
    schedule_id: str
    config: ScheduleConfig


@dataclass(frozen=True)
class PauseSchedule:
    schedule_id: str
    note: str = ""
    run_id: str | None = None  # set by pause_on_failure: the run whose failure pauses


def pause_after_run(
    state: ScheduleState | None, run_id: str, trigger: str, run_status: RunStatus
) -> PauseSchedule | None:
    """The pause a run's end leads to, if any: ``pause_on_failure`` pauses a live schedule
    after one of its scheduled runs failed (manual, API and backfill runs never pause it)."""
    if state is None or state.deleted or not state.config.policy.pause_on_failure:
        return None
    if trigger != "schedule" or run_status not in FAILED_STATUSES:
        return None
    return PauseSchedule(state.id, f"paused after run {run_id} failed", run_id=run_id)


@dataclass(frozen=True)
class ResumeSchedule:
    schedule_id: str
    note: str = ""


@dataclass(frozen=True)
class DeleteSchedule:
    schedule_id: str
    note: str = ""
    managed: Managed | None = None  # set when apply prunes it


@dataclass(frozen=True)
class ApplySchedule:
    """Make the schedule what a file declares: create it, change it, pause or resume it."""

    schedule_id: str
    config: ScheduleConfig
    paused: bool
    managed: Managed
    note: str = ""


ScheduleCommand = (
    CreateSchedule
    | UpdateSchedule
    | PauseSchedule
    | ResumeSchedule
    | DeleteSchedule
    | ApplySchedule
)


def decide(state: ScheduleState | None, command: ScheduleCommand) -> list[Event]:
    """The events a command produces against the current state (pure).

    Commands that would change nothing (pausing a paused schedule, an update
    equal to the current config) produce no event.
    """
    live = state is not None and state.live
    if isinstance(command, ApplySchedule):
        return decide_apply(state if live else None, command)
    if isinstance(command, CreateSchedule):
        if live:
            raise AlreadyExists(KIND, command.schedule_id)
        return [ScheduleCreated(schedule=command.config, paused=command.paused, note=command.note)]
    if not live or state is None:
        raise ScheduleNotFound(command.schedule_id)
    # a change to a schedule a file keeps, made otherwise than by applying the file
    override = state.managed is not None
    match command:
        case UpdateSchedule(config=config):
            changed = changed_fields(state.config, config)
            return (
                [ScheduleUpdated(schedule=config, changed=changed, override=override)]
                if changed
                else []
            )
        case PauseSchedule(note=note, run_id=run_id):
            if state.status is ScheduleStatus.PAUSED:
                return []
            cause = PauseCause.MANUAL if run_id is None else PauseCause.RUN_FAILED
            manual = cause is PauseCause.MANUAL
            return [
                SchedulePaused(note=note, cause=cause, run_id=run_id, override=override and manual)
            ]
        case ResumeSchedule(note=note):
            if state.status is not ScheduleStatus.PAUSED:
                return []
            return [ScheduleResumed(note=note, override=override)]
        case DeleteSchedule(note=note, managed=managed):
            return [ScheduleDeleted(note=note, managed=managed)]
    raise TypeError(f"unknown command {command!r}")


def decide_apply(state: ScheduleState | None, command: ApplySchedule) -> list[Event]:
    """The events that make a live schedule (or none) what the file declares; none
    when it already is. A schedule that pause_on_failure paused stays paused (a person
    resumes it), and a completed one stays completed."""
    managed, config = command.managed, command.config
    if state is None:
        created = ScheduleCreated(
            schedule=config, paused=command.paused, note=command.note, managed=managed
        )
        return [created]
    events: list[Event] = []
    changed = changed_fields(state.config, config)
    if changed or state.managed != managed or state.declared != config:
        events.append(ScheduleUpdated(schedule=config, changed=changed, managed=managed))
    if command.paused and state.status is ScheduleStatus.ACTIVE:
        events.append(SchedulePaused(note="paused as declared", managed=managed))
    elif not command.paused and state.status is ScheduleStatus.PAUSED:
        if not state.paused_by_failure:
            events.append(ScheduleResumed(note="resumed as declared", managed=managed))
    elif command.paused != state.declared_paused and not events and not state.paused_by_failure:
        # the status already is the file's, but the file's record of it is not
        events.append(ScheduleUpdated(schedule=config, changed=[], managed=managed))
    return events


def divergence(state: ScheduleState | None) -> dict[str, tuple[Any, Any]]:
    """How a schedule a file keeps differs from the file as last applied: field ->
    (the file's value, the live value), with ``paused`` for its status. Empty for a
    schedule no file keeps. A pause by pause_on_failure is not a divergence."""
    if state is None or state.deleted or state.managed is None or state.declared is None:
        return {}
    declared = state.declared.model_dump(mode="json")
    live = state.config.model_dump(mode="json")
    out = {
        key: (declared.get(key), live.get(key))
        for key in sorted(declared.keys() | live.keys())
        if declared.get(key) != live.get(key)
    }
    if state.status is not ScheduleStatus.COMPLETED and not state.paused_by_failure:
        paused = state.status is ScheduleStatus.PAUSED
        if paused != state.declared_paused:
            out["paused"] = (state.declared_paused, paused)
    return out


def evolve(state: ScheduleState | None, schedule_id: str, event: Event) -> ScheduleState | None:
    """The state after an event (pure)."""
    match event:
        case ScheduleCreated(schedule=config, paused=paused, note=note, managed=managed):
            status = ScheduleStatus.PAUSED if paused else ScheduleStatus.ACTIVE
            declared = config if managed is not None else None
            return ScheduleState(
                schedule_id,
                config,
                status,
                note,
                False,
                managed,
                declared,
                paused and declared is not None,
            )
    if state is None:
        return None
    match event:
        case ScheduleUpdated(schedule=config, managed=managed):
            state = replace(state, config=config)
            if managed is None:
                return state
            paused = state.status is ScheduleStatus.PAUSED and not state.paused_by_failure
            return replace(state, managed=managed, declared=config, declared_paused=paused)
        case SchedulePaused(note=note, cause=cause, managed=managed):
            failed = cause is PauseCause.RUN_FAILED
            state = replace(
                state, status=ScheduleStatus.PAUSED, note=note, paused_by_failure=failed
            )
            return (
                state if managed is None else replace(state, managed=managed, declared_paused=True)
            )
        case ScheduleResumed(note=note, managed=managed):
            state = replace(state, status=ScheduleStatus.ACTIVE, note=note, paused_by_failure=False)
            return (
                state if managed is None else replace(state, managed=managed, declared_paused=False)
            )
        case ScheduleDeleted(note=note):
            return replace(state, deleted=True, note=note)
    return state
