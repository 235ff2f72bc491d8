"""The Workflow aggregate: what a run does (an HTTP call, a Python handler, or nothing)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

import jsonschema
import yarl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.domain.addresses import PUBLIC_ONLY, OutboundPolicy
from service.domain.events import Event, register
from service.domain.managed import Managed, MaybeManaged
from service.domain.types import Duration
from service.errors import AlreadyExists, InvalidInput, WorkflowNotFound

KIND = "workflow"

_HANDLER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class Signing(StrEnum):
    """Where a webhook's signing secrets come from."""

    ENV = "env"  # one secret, in the workers' environment variable ``secret_env``
    STORED = "stored"  # the workflow's secrets the service keeps, encrypted, outside the log


class HttpTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["http"]
    url: str = Field(max_length=2048)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration | None = None
    # the webhook signing secret stays out of the log: workers read it from this variable
    secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")
    signing: Signing | None = Field(
        default=None,
        description=(
            "Where the signing secrets come from: 'env' (the variable secret_env names on"
            " the workers; the default when secret_env is set) or 'stored' (the secrets"
            " made with POST /v1/workflows/{id}/signing-secrets). Unset without"
            " secret_env: deliveries are not signed."
        ),
    )
    body: Literal["input", "envelope"] = Field(
        default="input",
        description=(
            "What a delivery's JSON body is: the run's input as it stands, or an envelope"
            " naming the fire (schedule_id, workflow_id, fire_id, run_id, nominal_time,"
            " trigger, attempt) around it as input."
        ),
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/?#]+", value):
            raise ValueError("must be an absolute http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> HttpTarget:
        if self.signing is Signing.STORED and self.secret_env is not None:
            raise ValueError("signing 'stored' takes no secret_env: choose one")
        if self.signing is Signing.ENV and self.secret_env is None:
            raise ValueError("signing 'env' needs secret_env")
        return self

    @property
    def signing_source(self) -> Signing | None:
        """Where this target's secrets come from; None: deliveries are not signed."""
        if self.signing is not None:
            return self.signing
        return Signing.ENV if self.secret_env is not None else None


class PythonTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["python"]
    handler: str

    @field_validator("handler")
    @classmethod
    def _handler(cls, value: str) -> str:
        if not _HANDLER.fullmatch(value):
            raise ValueError("must be 'module:function', such as 'jobs.billing:run'")
        return value


class NoTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["none"]


Target = Annotated[HttpTarget | PythonTarget | NoTarget, Field(discriminator="type")]


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=3, ge=1, le=100)
    initial_interval: Duration = 1000
    max_interval: Duration = 300_000
    backoff: float = Field(default=2.0, ge=1.0, le=10.0)


class WorkflowConfig(BaseModel):
    """A workflow as a client defines it (the body of PUT /v1/workflows/{id})."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2000)
    target: Target
    input_schema: dict[str, Any] | None = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout: Duration = 300_000

    @field_validator("input_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(part) for part in exc.path)
            raise ValueError(
                f"not a valid JSON Schema{' at ' + where if where else ''}: {exc.message}"
            ) from None
        return value


@register
class WorkflowCreated(MaybeManaged):
    aggregate = KIND
    workflow: WorkflowConfig


@register
class WorkflowUpdated(MaybeManaged):
    aggregate = KIND
    workflow: WorkflowConfig
    changed: list[str]


@register
class WorkflowDeleted(MaybeManaged):
    aggregate = KIND


@dataclass(frozen=True)
class WorkflowState:
    id: str
    config: WorkflowConfig
    deleted: bool = False
    managed: Managed | None = None  # kept by a file (service/manifests)


@dataclass(frozen=True)
class PutWorkflow:
    workflow_id: str
    config: WorkflowConfig
    outbound: OutboundPolicy = PUBLIC_ONLY  # where the deployment lets webhooks go
    managed: Managed | None = None  # set by apply


@dataclass(frozen=True)
class DeleteWorkflow:
    workflow_id: str
    managed: Managed | None = None  # set when apply prunes it


WorkflowCommand = PutWorkflow | DeleteWorkflow


def changed_fields(old: BaseModel, new: BaseModel) -> list[str]:
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    return sorted(k for k in after.keys() | before.keys() if before.get(k) != after.get(k))


def decide(state: WorkflowState | None, command: WorkflowCommand) -> list[Event]:
    """The events a command produces against the current state (pure)."""
    live = state is not None and not state.deleted
    match command:
        case PutWorkflow(config=config, outbound=outbound, managed=managed):
            check_target(config, outbound)
            if not live or state is None:
                return [WorkflowCreated(workflow=config, managed=managed)]
            changed = changed_fields(state.config, config)
            adopting = managed is not None and state.managed != managed
            if not changed and not adopting:
                return []
            override = managed is None and state.managed is not None
            return [
                WorkflowUpdated(
                    workflow=config, changed=changed, managed=managed, override=override
                )
            ]
        case DeleteWorkflow(workflow_id=wid, managed=managed):
            if not live:
                raise WorkflowNotFound(wid)
            return [WorkflowDeleted(managed=managed)]
    raise TypeError(f"unknown command {command!r}")


def check_target(config: WorkflowConfig, outbound: OutboundPolicy) -> None:
    """Refuse a webhook URL whose host is a literal address that no delivery could reach
    under ``outbound`` (InvalidInput naming ``target.url``). A host name passes: what it
    resolves to is checked on every delivery.

    Only commands check this, not the events: a workflow defined while the policy
    allowed its address still loads, and its deliveries are refused instead.
    """
    if not isinstance(config.target, HttpTarget):
        return
    try:
        host = yarl.URL(config.target.url).raw_host or ""
    except ValueError:
        return  # yarl refuses it: the delivery fails as an invalid URL
    refusal = outbound.check_host(host)
    if refusal is not None:
        raise InvalidInput.one("target.url", str(refusal))


def evolve(state: WorkflowState | None, workflow_id: str, event: Event) -> WorkflowState | None:
    """The state after an event (pure)."""
    match event:
        case WorkflowCreated(workflow=config, managed=managed):
            return WorkflowState(id=workflow_id, config=config, managed=managed)
        case WorkflowUpdated(workflow=config, managed=managed):
            # a change by the API leaves a file's workflow kept by the file
            kept = managed or (state.managed if state is not None else None)
            return WorkflowState(id=workflow_id, config=config, managed=kept)
        case WorkflowDeleted():
            return None if state is None else WorkflowState(state.id, state.config, deleted=True)
    return state


def ensure_absent(state: WorkflowState | None, workflow_id: str) -> None:
    if state is not None and not state.deleted:
        raise AlreadyExists(KIND, workflow_id)
