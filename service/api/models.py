"""The API's request and response bodies. Requests are validated with these models,
and /openapi.json is generated from them, so the contract and the checks agree."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.domain.ids import ID_PATTERN
from service.domain.policies import ScheduleStatus
from service.domain.schedule import ScheduleConfig, SchedulePolicy
from service.domain.spec import Spec
from service.domain.workflow import RetryPolicy, Target, WorkflowConfig


class ScheduleCreate(ScheduleConfig):
    """Body of POST /v1/schedules."""

    id: str | None = Field(default=None, pattern=ID_PATTERN)
    paused: bool = False
    note: str = Field(default="", max_length=2000)


class NoteBody(BaseModel):
    """Body of POST /v1/schedules/{id}/pause and /resume."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=2000)


class WorkflowPut(WorkflowConfig):
    """Body of PUT /v1/workflows/{id}."""

    id: str | None = Field(default=None, pattern=ID_PATTERN)


class Written(BaseModel):
    """202: the change is in the log, but the view had not applied it in time: read it again."""

    id: str
    version: int
    position: str = Field(description="The log position of the change")


class ScheduleInfo(BaseModel):
    action_count: int = 0
    missed_catchup_count: int = 0
    overlap_skipped_count: int = 0
    buffer_dropped_count: int = 0
    running_runs: list[str] = Field(default_factory=list)
    recent_actions: list[dict[str, Any]] = Field(default_factory=list)
    remaining_actions: int | None = None


class SpecView(Spec):
    description: list[str] = Field(default_factory=list)


class Divergence(BaseModel):
    """A field of a schedule a file keeps, as the file declares it and as it is."""

    file: Any = None
    live: Any = None


class ScheduleView(BaseModel):
    id: str
    name: str
    description: str
    workflow_id: str
    spec: SpecView
    policy: SchedulePolicy
    input: Any = None
    max_actions: int | None = None
    tags: list[str]
    status: ScheduleStatus
    paused: bool
    note: str
    version: int
    created_at: str
    updated_at: str
    next_run_at: str | None
    next_run_times: list[str]
    last_run_at: str | None = None
    last_run_status: str | None = None
    info: ScheduleInfo
    managed_by: str | None = Field(
        default=None, description="'apply' when a file keeps this schedule (cronstream apply)"
    )
    source: str | None = Field(default=None, description="The file that declares it")
    override: bool = Field(
        default=False,
        description="Changed since the last apply otherwise than by the file: the next apply "
        "reverts it unless run with --keep-overrides",
    )
    divergence: dict[str, Divergence] = Field(
        default_factory=dict,
        description="Each field (and 'paused') that differs from the file: the file's value "
        "and the live one",
    )


class SchedulePage(BaseModel):
    items: list[ScheduleView]
    next_cursor: str | None


class WorkflowView(BaseModel):
    id: str
    name: str
    description: str
    target: Target
    input_schema: dict[str, Any] | None
    retry: RetryPolicy
    timeout: str
    version: int
    created_at: str
    updated_at: str


class WorkflowPage(BaseModel):
    items: list[WorkflowView]
    next_cursor: str | None


class HistoryItem(BaseModel):
    position: str
    type: str
    v: int
    at: str
    actor: str | None
    data: dict[str, Any]
    meta: dict[str, Any]


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    next_cursor: str | None


class FeedEvent(BaseModel):
    position: str = Field(description="Feed cursor just after this event; resume with ?after=")
    partition: int
    type: str
    v: int
    sid: str
    data: dict[str, Any]
    meta: dict[str, Any]
    at: str


class StreamEvent(BaseModel):
    """One message of /v1/events/stream. ``data`` is a feed item (as in GET /v1/events);
    a message with only an ``id`` moves the client's cursor past events it filtered out."""

    id: str
    event: str | None = None
    data: str | None = Field(
        default=None,
        json_schema_extra={
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/FeedEvent"},
        },
    )


class FeedPage(BaseModel):
    items: list[FeedEvent]
    next: str


class Health(BaseModel):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None
