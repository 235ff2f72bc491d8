"""Notifications: which events make which incidents, and when one is sent.

A *rule* watches one kind of trouble (``Trigger``) and names the channels to tell.
An event of the log (or a probe of the ticker's lag) that a rule matches is an
*occurrence*; occurrences become an *incident* — the thing a person is told about —
at once (``threshold`` 0) or when more than ``threshold`` of them fall in one window
of ``window`` (the overlap case: "skipped more than 5 times in 10 minutes").

Each incident has a key, so it is told once however often its events are read again:
a failed run is one incident per run, a dead letter one per run, missed fires one per
``FiresMissed`` event, an auto-pause one per pause, a windowed trigger one per subject
and window, the ticker's lag one per partition and window.

Two limits keep a flapping failure from flooding a channel:

- a rule's *cooldown* per subject (the schedule, the workflow of a run without one, or
  the partition): after an incident was told, the rule's further incidents about the
  same subject within the cooldown are recorded as suppressed, not sent;
- a channel's *rate*: at most ``rate_per_minute`` sends a minute, the rest recorded as
  suppressed.

``service/store/notify.lua`` applies these rules atomically; the functions here state
them for Python, and one decision table tests both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.domain.ids import ID_PATTERN
from service.domain.namespaces import DEFAULT, namespace_of, qualify, split
from service.domain.timeutil import format_duration, to_rfc3339

MINUTE_MS = 60_000
MAX_RATE_PER_MINUTE = 10_000
SEEN_TTL_MS = 7 * 24 * 3600 * 1000
"""How long an event or incident is remembered as told: longer than any backlog a
restarted notifier reads, so a redelivered event is never told twice."""

_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
URL_PATTERN = rf"^https?://[A-Za-z0-9.-]+(:{_PORT})?([/?#][!-~]*)?$"
"""An http(s) URL of a host name or IPv4 address, printable ASCII (IDNs as punycode)."""
EMAIL_PATTERN = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}$"
Url = Annotated[
    str, Field(max_length=2048, pattern=URL_PATTERN, description="An http:// or https:// URL")
]
Email = Annotated[str, Field(max_length=320, pattern=EMAIL_PATTERN)]


class Trigger(StrEnum):
    RUN_FAILED = "run_failed"  # a run failed or timed out after its retries
    DEAD_LETTERED = "dead_lettered"
    FIRES_MISSED = "fires_missed"
    OVERLAP_SKIPPED = "overlap_skipped"  # a fire skipped because the previous run still ran
    SCHEDULE_AUTO_PAUSED = "schedule_auto_paused"  # pause_on_failure paused a schedule
    TICKER_BEHIND = "ticker_behind"  # a partition's oldest due schedule is overdue


class ChannelType(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    EMAIL = "email"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


class Suppression(StrEnum):
    COOLDOWN = "cooldown"
    RATE_LIMITED = "rate_limited"


# -- channels ----------------------------------------------------------------------------


class WebhookChannel(BaseModel):
    """A JSON POST signed the Standard Webhooks way, as workflows' HTTP targets are."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook"]
    url: Url
    secret: str | None = Field(
        default=None,
        min_length=8,
        max_length=200,
        description="Signing secret (whsec_ + base64, or any text). Write-only; when none is "
        "given and none is stored, the service makes one and shows it once.",
    )


class SlackChannel(BaseModel):
    """A Slack-compatible incoming webhook: a JSON POST of ``{"text": ...}``. Its URL
    holds the workspace's token, so it is kept as a secret: write-only."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["slack"]
    url: Url = Field(description="The incoming webhook's URL. Write-only.")


class EmailChannel(BaseModel):
    """Mail over SMTP, optionally upgraded with STARTTLS, optionally logged in."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["email"]
    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:\[\]-]+$")
    port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = Field(
        default=None, min_length=1, max_length=200, description="Log in as this user (AUTH)"
    )
    password: str | None = Field(
        default=None, max_length=200, description="The user's password. Write-only."
    )
    sender: Email = Field(alias="from")
    to: list[Email] = Field(min_length=1, max_length=20)


ChannelTarget = Annotated[WebhookChannel | SlackChannel | EmailChannel, Field(discriminator="type")]

SECRET_FIELDS: dict[ChannelType, tuple[str, ...]] = {
    ChannelType.WEBHOOK: ("secret",),
    ChannelType.SLACK: ("url",),
    ChannelType.EMAIL: ("password",),
}
"""The members of each channel type that are kept sealed and never shown."""


class ChannelConfig(BaseModel):
    """A channel as a client defines it (the body of PUT /v1/notifications/channels/{id})."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", max_length=500)
    target: ChannelTarget
    rate_per_minute: int = Field(default=30, ge=1, le=MAX_RATE_PER_MINUTE)
    timeout_s: int = Field(default=10, ge=1, le=120, description="Each attempt's limit")


def public_target(target: WebhookChannel | SlackChannel | EmailChannel) -> dict[str, Any]:
    """A channel's target without its secrets (what views, logs and records show)."""
    hidden = SECRET_FIELDS[ChannelType(target.type)]
    shown = target.model_dump(mode="json", by_alias=True, exclude=set(hidden))
    return {k: v for k, v in shown.items() if v is not None}


# -- rules -------------------------------------------------------------------------------


class RuleConfig(BaseModel):
    """A rule as a client defines it (the body of PUT /v1/notifications/rules/{id})."""

    model_config = ConfigDict(extra="forbid")

    on: Trigger
    channels: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(min_length=1, max_length=10)
    schedule_id: str | None = Field(default=None, pattern=ID_PATTERN)
    workflow_id: str | None = Field(default=None, pattern=ID_PATTERN)
    threshold: int = Field(
        default=0, ge=0, le=100_000, description="Tell when more than this many occur in a window"
    )
    window_s: int = Field(
        default=600, ge=1, le=7 * 24 * 3600, description="The window occurrences are counted in"
    )
    cooldown_s: int = Field(
        default=300,
        ge=0,
        le=7 * 24 * 3600,
        description="After an incident is told, the rule's others about the same subject "
        "within this many seconds are suppressed (0: none)",
    )
    lag_s: int = Field(
        default=60,
        ge=1,
        le=24 * 3600,
        description="ticker_behind: how overdue the oldest due schedule may be",
    )
    enabled: bool = True

    @property
    def window(self) -> int:
        return self.window_s * 1000

    @property
    def cooldown(self) -> int:
        return self.cooldown_s * 1000

    @property
    def lag(self) -> int:
        return self.lag_s * 1000

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


# -- occurrences and incidents -----------------------------------------------------------


@dataclass(frozen=True)
class Occurrence:
    """Something a rule may watch: what happened, to which subject, and when."""

    trigger: Trigger
    ident: str  # unique per occurrence (the event's partition and position)
    subject: str  # the schedule, the workflow of a run without one, or the partition
    at_ms: int
    schedule_id: str | None = None
    workflow_id: str | None = None
    run_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


RUN_FAILURES = frozenset({"RunFailed", "RunTimedOut"})
EVENT_TRIGGERS: dict[str, Trigger] = {
    "RunFailed": Trigger.RUN_FAILED,
    "RunTimedOut": Trigger.RUN_FAILED,
    "RunDeadLettered": Trigger.DEAD_LETTERED,
    "FiresMissed": Trigger.FIRES_MISSED,
    "FireSkipped": Trigger.OVERLAP_SKIPPED,
    "SchedulePaused": Trigger.SCHEDULE_AUTO_PAUSED,
}
"""The event types some trigger watches (others are passed over unread)."""

SCHEDULE_TRIGGERS = frozenset(
    {Trigger.FIRES_MISSED, Trigger.OVERLAP_SKIPPED, Trigger.SCHEDULE_AUTO_PAUSED}
)
"""Triggers whose events are a schedule's own (the run triggers' are a run's)."""

_DETAIL_FIELDS = ("error", "status", "attempt", "reason", "count", "first", "last", "note")


def watched(event_type: str, data: dict[str, Any]) -> Trigger | None:
    """The trigger an event is an occurrence of, if any."""
    trigger = EVENT_TRIGGERS.get(event_type)
    if trigger is Trigger.OVERLAP_SKIPPED and data.get("reason") != "overlap":
        return None
    if trigger is Trigger.SCHEDULE_AUTO_PAUSED and data.get("cause") != "run_failed":
        return None
    return trigger


def occurrence_of(
    event_type: str,
    data: dict[str, Any],
    *,
    ident: str,
    sid: str,
    at_ms: int,
    workflow_id: str | None = None,
    schedule_id: str | None = None,
) -> Occurrence | None:
    """The occurrence an event is (None: no trigger watches it).

    ``workflow_id``/``schedule_id`` are the run's, for run events (the caller reads
    them from the run's record); a schedule's events name their schedule by ``sid``.
    """
    trigger = watched(event_type, data)
    if trigger is None:
        return None
    run_id = data.get("run_id")
    if trigger in SCHEDULE_TRIGGERS:
        schedule_id = sid
    details = {k: data[k] for k in _DETAIL_FIELDS if data.get(k) not in (None, "")}
    return Occurrence(
        trigger=trigger,
        ident=ident,
        subject=schedule_id or workflow_id or sid,
        at_ms=at_ms,
        schedule_id=schedule_id,
        workflow_id=workflow_id,
        run_id=str(run_id) if run_id is not None else None,
        details=details,
    )


def lag_occurrence(
    partition: int, oldest_due_ms: int | None, now_ms: int, lag_ms: int
) -> Occurrence | None:
    """The ticker is behind on a partition when its oldest due schedule is overdue by more
    than ``lag_ms`` (a ticker that holds the lease takes a due schedule within a second)."""
    if oldest_due_ms is None or now_ms - oldest_due_ms <= lag_ms:
        return None
    overdue = now_ms - oldest_due_ms
    return Occurrence(
        trigger=Trigger.TICKER_BEHIND,
        ident=f"lag:{partition}:{oldest_due_ms}",
        subject=f"partition-{partition}",
        at_ms=now_ms,
        details={"partition": partition, "overdue": format_duration(overdue)},
    )


def namespace_of_occurrence(occurrence: Occurrence) -> str:
    """The namespace an occurrence is of: its schedule's or workflow's (the ticker's lag
    is the service's, of ``default``)."""
    if occurrence.trigger is Trigger.TICKER_BEHIND:
        return DEFAULT
    return namespace_of(occurrence.schedule_id or occurrence.workflow_id or occurrence.subject)


def matches(rule: RuleConfig, occurrence: Occurrence, namespace: str = DEFAULT) -> bool:
    """Whether a rule of ``namespace`` watches this occurrence: of its namespace only, of
    its trigger, and its filters (internal ids, as the rule keeps them) when set."""
    if not rule.enabled or rule.on is not occurrence.trigger:
        return False
    if namespace_of_occurrence(occurrence) != namespace:
        return False
    if rule.schedule_id is not None and rule.schedule_id != occurrence.schedule_id:
        return False
    return rule.workflow_id is None or rule.workflow_id == occurrence.workflow_id


def in_namespace(rule_id: str, rule: RuleConfig) -> RuleConfig:
    """A rule kept as its namespace names things (bare ids), with those ids made internal
    in the namespace of ``rule_id`` (an internal id), as events and channels are kept."""
    space = namespace_of(rule_id)
    if space == DEFAULT:
        return rule
    return rule.model_copy(
        update={
            "channels": [qualify(space, c) for c in rule.channels],
            "schedule_id": None if rule.schedule_id is None else qualify(space, rule.schedule_id),
            "workflow_id": None if rule.workflow_id is None else qualify(space, rule.workflow_id),
        }
    )


def window_start(at_ms: int, window_ms: int) -> int:
    return at_ms - at_ms % window_ms


def windowed(rule: RuleConfig) -> bool:
    """Whether the rule counts occurrences in windows (else each is an incident)."""
    return rule.threshold > 0 or rule.on is Trigger.TICKER_BEHIND


@dataclass(frozen=True)
class Incident:
    """What a rule tells its channels about: keyed, so it is told once."""

    rule_id: str
    key: str
    occurrence: Occurrence
    window_start_ms: int | None = None


def incident_of(rule_id: str, rule: RuleConfig, occurrence: Occurrence) -> Incident:
    """The incident an occurrence belongs to (whether it is told is the store's call)."""
    trigger = occurrence.trigger
    if windowed(rule):
        start = window_start(occurrence.at_ms, rule.window)
        return Incident(rule_id, f"{trigger}:{occurrence.subject}:{start}", occurrence, start)
    if occurrence.run_id is not None:
        return Incident(rule_id, f"{trigger}:{occurrence.run_id}", occurrence)
    return Incident(rule_id, f"{trigger}:{occurrence.ident}", occurrence)


# -- the decisions notify.lua enforces ---------------------------------------------------


def threshold_crossed(count: int, threshold: int) -> bool:
    """An incident opens on the occurrence that makes the count exceed the threshold."""
    return count > threshold


def in_cooldown(last_told_ms: int | None, at_ms: int, cooldown_ms: int) -> bool:
    """Whether an incident at ``at_ms`` falls in the cooldown of the last one told."""
    return last_told_ms is not None and abs(at_ms - last_told_ms) < cooldown_ms


def over_rate(sent_this_minute: int, rate_per_minute: int) -> bool:
    """Whether one more send would pass the channel's rate (count includes this one)."""
    return sent_this_minute > rate_per_minute


def retry_delay_ms(attempt: int, base_ms: int, cap_ms: int = 300_000) -> int:
    """Wait before delivery attempt ``attempt + 1``: doubling from ``base_ms``."""
    return int(min(cap_ms, base_ms * 2 ** max(attempt - 1, 0)))


def should_retry(attempt: int, retryable: bool, max_attempts: int) -> bool:
    return retryable and attempt < max_attempts


# -- what is said ------------------------------------------------------------------------

_TITLES = {
    Trigger.RUN_FAILED: "run {run_id} failed",
    Trigger.DEAD_LETTERED: "run {run_id} was dead-lettered",
    Trigger.FIRES_MISSED: "schedule {schedule_id} missed {count} fire(s)",
    Trigger.OVERLAP_SKIPPED: "schedule {schedule_id} skipped fires for overlap",
    Trigger.SCHEDULE_AUTO_PAUSED: "schedule {schedule_id} was paused after a failed run",
    Trigger.TICKER_BEHIND: "the ticker is behind on partition {partition}",
}


def summary(incident: Incident, count: int | None = None) -> str:
    """One line saying what happened (the Slack text, the mail's subject)."""
    occ = incident.occurrence
    values: dict[str, Any] = {"run_id": occ.run_id, "schedule_id": _bare(occ.schedule_id)}
    values |= occ.details
    line = "cronstream: " + _TITLES[occ.trigger].format_map(_Missing(values))
    if occ.trigger is not Trigger.TICKER_BEHIND and occ.schedule_id is None and occ.workflow_id:
        line += f" (workflow {_bare(occ.workflow_id)})"
    if incident.window_start_ms is not None and count is not None:
        line += f": {count} time(s) since {to_rfc3339(incident.window_start_ms)}"
    error = occ.details.get("error") or occ.details.get("reason")
    if error and occ.trigger is not Trigger.OVERLAP_SKIPPED:
        line += f": {str(error)[:300]}"
    return " ".join(line.split())  # one line: it is a mail's subject too


def _bare(internal: str | None) -> str | None:
    """An id as its own namespace knows it (what is told goes to that namespace)."""
    return None if internal is None else split(internal)[1]


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"
