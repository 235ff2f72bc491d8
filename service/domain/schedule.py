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
class ScheduleCreated(Event):
    aggregate = KIND
    schedule: ScheduleConfig
    paused: bool = False
    note: str = ""


@register
class ScheduleUpdated(Event):
    aggregate = KIND
    schedule: ScheduleConfig
    changed: list[str]


class PauseCause(StrEnum):
    """Why a schedule was paused."""

    MANUAL = "manual"  # a person or program asked (API, CLI)
    RUN_FAILED = "run_failed"  # pause_on_failure: a scheduled run failed after its retries


@register
class SchedulePaused(Event):
    """v2 (was v1 ``{note}``): says why, so "paused by a failure" is a fact, not a note.

    v1 events are upcast by ``service.domain.upcasters``.
    """

    version = 2
    aggregate = KIND
    note: str = ""
    cause: PauseCause = PauseCause.MANUAL
    run_id: str | None = None  # the failed run, when cause is run_failed


@register
class ScheduleResumed(Event):
    aggregate = KIND
    note: str = ""


@register
class ScheduleDeleted(Event):
    aggregate = KIND
    note: str = ""


@dataclass(frozen=True)
class ScheduleState:
    id: str
    config: ScheduleConfig
    status: ScheduleStatus = ScheduleStatus.ACTIVE
    note: str = ""
    deleted: bool = False

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


ScheduleCommand = CreateSchedule | UpdateSchedule | PauseSchedule | ResumeSchedule | DeleteSchedule


def decide(state: ScheduleState | None, command: ScheduleCommand) -> list[Event]:
    """The events a command produces against the current state (pure).

    Commands that would change nothing (pausing a paused schedule, an update
    equal to the current config) produce no event.
    """
    live = state is not None and state.live
    if isinstance(command, CreateSchedule):
        if live:
            raise AlreadyExists(KIND, command.schedule_id)
        return [ScheduleCreated(schedule=command.config, paused=command.paused, note=command.note)]
    if not live or state is None:
        raise ScheduleNotFound(command.schedule_id)
    match command:
        case UpdateSchedule(config=config):
            changed = changed_fields(state.config, config)
            return [ScheduleUpdated(schedule=config, changed=changed)] if changed else []
        case PauseSchedule(note=note, run_id=run_id):
            if state.status is ScheduleStatus.PAUSED:
                return []
            cause = PauseCause.MANUAL if run_id is None else PauseCause.RUN_FAILED
            return [SchedulePaused(note=note, cause=cause, run_id=run_id)]
        case ResumeSchedule(note=note):
            if state.status is not ScheduleStatus.PAUSED:
                return []
            return [ScheduleResumed(note=note)]
        case DeleteSchedule(note=note):
            return [ScheduleDeleted(note=note)]
    raise TypeError(f"unknown command {command!r}")


def evolve(state: ScheduleState | None, schedule_id: str, event: Event) -> ScheduleState | None:
    """The state after an event (pure)."""
    match event:
        case ScheduleCreated(schedule=config, paused=paused, note=note):
            status = ScheduleStatus.PAUSED if paused else ScheduleStatus.ACTIVE
            return ScheduleState(id=schedule_id, config=config, status=status, note=note)
    if state is None:
        return None
    match event:
        case ScheduleUpdated(schedule=config):
            return replace(state, config=config)
        case SchedulePaused(note=note):
            return replace(state, status=ScheduleStatus.PAUSED, note=note)
        case ScheduleResumed(note=note):
            return replace(state, status=ScheduleStatus.ACTIVE, note=note)
        case ScheduleDeleted(note=note):
            return replace(state, deleted=True, note=note)
    return state
