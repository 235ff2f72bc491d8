"""Notification channels and rules (admin), and what was told (GET /v1/notifications).

A channel's secrets (a webhook's signing secret, a Slack webhook's URL, an SMTP
password) are write-only: views name the members stored, never their values; a
webhook secret the service made is in the answer to the PUT that made it, once.
Nothing here appends to the log: channels, rules and records live in their own keys
(service/store/notifications.py).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError
from yarl import URL

from service.api import tenancy
from service.api.context import (
    CLOCK,
    KEYS,
    REDIS,
    SETTINGS,
    client_model,
    json_response,
    parse_json,
    query_choice,
    query_int,
    query_text,
    read_body,
)
from service.api.namespaces import namespace
from service.api.params import AN_ID, ID, RUN_CURSOR, RUN_CURSOR_PATTERN, id_filter, limit, one_of
from service.api.problems import field_errors
from service.api.routing import Param, Reply, route
from service.domain.ids import ID_PATTERN, is_valid_id
from service.domain.namespaces import namespace_of
from service.domain.notifications import (
    ChannelConfig,
    DeliveryStatus,
    EmailChannel,
    RuleConfig,
    Trigger,
)
from service.domain.timeutil import to_rfc3339
from service.domain.tokens import Scope
from service.errors import FieldError, InvalidInput
from service.store.notifications import (
    ChannelNotFound,
    NotificationStore,
    RuleNotFound,
    Stored,
)

TAG = "notifications"
CHANNELS = "/v1/notifications/channels"
RULES = "/v1/notifications/rules"
NO_STORE = {"Cache-Control": "no-store"}
UNION_TAGS = frozenset({"webhook", "slack", "email"})
CHANNEL_ID = Param("id", "Channel id", ID, location="path", required=True)
RULE_ID = Param("id", "Rule id", ID, location="path", required=True)
STATUSES = [str(s) for s in DeliveryStatus]
TRIGGERS = [str(t) for t in Trigger]
SCAN_BATCH = 500
SCAN_BATCHES = 20


class ChannelView(BaseModel):
    id: str
    description: str
    target: dict[str, Any] = Field(description="The channel's target without its secrets")
    rate_per_minute: int
    timeout_s: int
    secrets: list[str] = Field(description="The secret members stored (never their values)")
    created_at: str
    updated_at: str
    secret: str | None = Field(
        default=None,
        description="A webhook signing secret the service made: in this answer only",
    )


class ChannelPage(BaseModel):
    items: list[ChannelView]


class RuleView(RuleConfig):
    id: str
    created_at: str
    updated_at: str


class RulePage(BaseModel):
    items: list[RuleView]


class NotificationView(BaseModel):
    id: str
    rule: str
    trigger: str
    incident: str = Field(description="The incident's key: told once")
    subject: str = Field(
        description="The schedule, the workflow of a run without one, or the partition"
    )
    channel: str
    status: DeliveryStatus
    reason: str | None = Field(description="Why it was suppressed: cooldown or rate_limited")
    summary: str
    count: int = Field(description="Occurrences counted when the incident opened")
    attempts: int
    error: str | None
    code: int | None = Field(description="The receiver's last HTTP status or SMTP code")
    schedule_id: str | None
    workflow_id: str | None
    run_id: str | None
    details: dict[str, Any]
    occurred_at: str
    created_at: str
    updated_at: str
    sent_at: str | None
    next_attempt_at: str | None


class NotificationPage(BaseModel):
    items: list[NotificationView]
    next_cursor: str | None


def _store(request: web.Request) -> NotificationStore:
    settings = request.app[SETTINGS]
    return NotificationStore(request.app[REDIS], request.app[KEYS], settings.secret_key or "")


def _path_id(request: web.Request, *, for_write: bool, missing: type[Exception]) -> str:
    """The internal id (in the request's namespace) of the channel or rule the path names."""
    named = request.match_info["id"]
    if is_valid_id(named):
        return tenancy.internal(request, named)
    if for_write:
        raise InvalidInput.one("id", AN_ID.replace("an id: ", "must be "))
    raise missing(named)


def _channel_body(raw: bytes) -> ChannelConfig:
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise InvalidInput.one("body", "must be a JSON object")
    try:
        return client_model(ChannelConfig, data)
    except ValidationError as exc:
        errors = [
            FieldError(".".join(p for p in e.field.split(".") if p not in UNION_TAGS), e.message)
            for e in field_errors(exc)
        ]
        raise InvalidInput(errors) from None


def _check_outbound(request: web.Request, config: ChannelConfig) -> None:
    """Refuse at once an address that every delivery would refuse (a literal one)."""
    policy = request.app[SETTINGS].outbound_policy()
    target = config.target
    if isinstance(target, EmailChannel):
        field, host = "target.host", target.host.strip("[]")
    else:
        field = "target.url"
        try:
            host = URL(target.url).raw_host or ""
        except (ValueError, UnicodeError):
            raise InvalidInput.one(field, "is not a URL that can be parsed") from None
    refusal = policy.check_host(host)
    if refusal is not None:
        raise InvalidInput.one(field, str(refusal))


def channel_view(stored: Stored) -> dict[str, Any]:
    """A stored channel as shown: stored without its secrets, so shown as stored."""
    config = stored.config
    return {
        "id": tenancy.bare(stored.id),
        "description": config.get("description", ""),
        "target": {k: v for k, v in config["target"].items() if v is not None},
        "rate_per_minute": config["rate_per_minute"],
        "timeout_s": config["timeout_s"],
        "secrets": list(stored.secrets),
        "created_at": to_rfc3339(stored.created_ms),
        "updated_at": to_rfc3339(stored.updated_ms),
    }


def rule_view(stored: Stored) -> dict[str, Any]:
    """A rule as its namespace knows it (kept so: its ids are bare)."""
    config = RuleConfig.model_validate(stored.config)
    view: dict[str, Any] = {"id": tenancy.bare(stored.id), **config.model_dump(mode="json")}
    view["created_at"] = to_rfc3339(stored.created_ms)
    view["updated_at"] = to_rfc3339(stored.updated_ms)
    return view


# -- channels ----------------------------------------------------------------------------


@route(
    "PUT",
    CHANNELS + "/{id}",
    summary="Define or replace a notification channel (webhook, slack or email)",
    tag=TAG,
    scope=Scope.ADMIN,
    body=ChannelConfig,
    replies=(
        Reply(200, "Replaced", ChannelView),
        Reply(201, "Created", ChannelView),
    ),
    problems=(409, 413, 422, 503),
    params=(CHANNEL_ID,),
)
async def put_channel(request: web.Request) -> web.StreamResponse:
    channel_id = _path_id(request, for_write=True, missing=ChannelNotFound)
    config = _channel_body(await read_body(request))
    _check_outbound(request, config)
    store = _store(request)
    existed = await store.channel(channel_id) is not None
    stored, made = await store.put_channel(channel_id, config, request.app[CLOCK].now_ms())
    view = channel_view(stored)
    if made is not None:
        view["secret"] = made
    return json_response(view, 200 if existed else 201, NO_STORE)


@route(
    "GET",
    CHANNELS + "/{id}",
    summary="Read a notification channel (never its secrets)",
    tag=TAG,
    scope=Scope.ADMIN,
    replies=(Reply(200, "The channel", ChannelView),),
    problems=(404, 503),
    params=(CHANNEL_ID,),
)
async def get_channel(request: web.Request) -> web.StreamResponse:
    channel_id = _path_id(request, for_write=False, missing=ChannelNotFound)
    stored = await _store(request).channel(channel_id)
    if stored is None:
        raise ChannelNotFound(channel_id)
    return json_response(channel_view(stored))


@route(
    "GET",
    CHANNELS,
    summary="List notification channels",
    tag=TAG,
    scope=Scope.ADMIN,
    replies=(Reply(200, "Every channel, in id order", ChannelPage),),
    problems=(503,),
)
async def list_channels(request: web.Request) -> web.StreamResponse:
    channels = await _store(request).channels()
    mine = [channel_view(c) for c in channels if tenancy.owns(request, c.id)]
    return json_response({"items": mine})


@route(
    "DELETE",
    CHANNELS + "/{id}",
    summary="Delete a notification channel (sends still queued for it fail)",
    tag=TAG,
    scope=Scope.ADMIN,
    replies=(Reply(204, "Deleted", media_type=None),),
    problems=(404, 503),
    params=(CHANNEL_ID,),
)
async def delete_channel(request: web.Request) -> web.StreamResponse:
    channel_id = _path_id(request, for_write=False, missing=ChannelNotFound)
    await _store(request).delete_channel(channel_id)
    return web.Response(status=204)


# -- rules -------------------------------------------------------------------------------


@route(
    "PUT",
    RULES + "/{id}",
    summary="Define or replace a notification rule",
    tag=TAG,
    scope=Scope.ADMIN,
    body=RuleConfig,
    replies=(Reply(200, "Replaced", RuleView), Reply(201, "Created", RuleView)),
    problems=(409, 413, 422, 503),
    params=(RULE_ID,),
)
async def put_rule(request: web.Request) -> web.StreamResponse:
    rule_id = _path_id(request, for_write=True, missing=RuleNotFound)
    data = parse_json(await read_body(request))
    if not isinstance(data, dict):
        raise InvalidInput.one("body", "must be a JSON object")
    config = client_model(RuleConfig, data)
    store = _store(request)
    existed = await store.rule(rule_id) is not None
    stored = await store.put_rule(rule_id, config, request.app[CLOCK].now_ms())
    return json_response(rule_view(stored), 200 if existed else 201)


@route(
    "GET",
    RULES + "/{id}",
    summary="Read a notification rule",
    tag=TAG,
    scope=Scope.ADMIN,
    replies=(Reply(200, "The rule", RuleView),),
    problems=(404, 503),
    params=(RULE_ID,),
)
async def get_rule(request: web.Request) -> web.StreamResponse:
    rule_id = _path_id(request, for_write=False, missing=RuleNotFound)
    stored = await _store(request).rule(rule_id)
    if stored is None:
        raise RuleNotFound(rule_id)
    return json_response(rule_view(stored))


@route(
    "GET",
    RULES,
    summary="List notification rules",
    tag=TAG,
    scope=Scope.ADMIN,
    replies=(Reply(200, "Every rule, in id order", RulePage),),
    problems=(503,),
)
async def list_rules(request: web.Request) -> web.StreamResponse:
    rules = await _store(request).rules()
    return json_response({"items": [rule_view(r) for r in rules if tenancy.owns(request, r.id)]})


@route(
    "DELETE",
    RULES + "/{id}",
    summary="Delete a notification rule",
    tag=TAG,
    scope=Scope.ADMIN,
    replies=(Reply(204, "Deleted", media_type=None),),
    problems=(404, 503),
    params=(RULE_ID,),
)
async def delete_rule(request: web.Request) -> web.StreamResponse:
    rule_id = _path_id(request, for_write=False, missing=RuleNotFound)
    await _store(request).delete_rule(rule_id)
    return web.Response(status=204)


# -- what was told -----------------------------------------------------------------------


def notification_view(record: dict[str, str]) -> dict[str, Any]:
    def text(name: str) -> str | None:
        return record.get(name) or None

    def moment(name: str) -> str | None:
        value = record.get(name)
        return to_rfc3339(int(value)) if value else None

    code = record.get("code")
    return {
        "id": record["id"],
        **{name: tenancy.bare(record.get(name, "")) for name in ("rule", "subject", "channel")},
        **{name: record.get(name, "") for name in ("trigger", "incident", "status", "summary")},
        "reason": text("reason"),
        "count": int(record.get("count") or 1),
        "attempts": int(record.get("attempts") or 0),
        "error": text("error"),
        "code": int(code) if code else None,
        **{name: _bare_or_none(text(name)) for name in ("schedule_id", "workflow_id")},
        "run_id": text("run_id"),
        "details": orjson.loads(record.get("details") or "{}"),
        "occurred_at": moment("at") or moment("created"),
        "created_at": moment("created"),
        "updated_at": moment("updated") or moment("created"),
        "sent_at": moment("sent"),
        "next_attempt_at": moment("next_attempt"),
    }


def _bare_or_none(internal: str | None) -> str | None:
    return None if internal is None else tenancy.bare(internal)


@route(
    "GET",
    "/v1/notifications",
    summary="What was told, suppressed or failed, and why: newest first",
    tag=TAG,
    scope=Scope.EVENTS_READ,
    replies=(Reply(200, "A page of notification records, newest first", NotificationPage),),
    problems=(422, 503),
    params=(
        limit(50, 500),
        RUN_CURSOR,
        one_of("status", "Only records in this status", STATUSES),
        one_of("trigger", "Only records of this trigger", TRIGGERS),
        id_filter("rule", "Only records of this rule"),
        id_filter("channel", "Only records of this channel"),
    ),
)
async def list_notifications(request: web.Request) -> web.StreamResponse:
    size = query_int(request, "limit", 50, 1, 500)
    cursor = query_text(request, "cursor", RUN_CURSOR_PATTERN, "the next_cursor of a previous page")
    asked = {
        "status": query_choice(request, "status", STATUSES),
        "trigger": query_choice(request, "trigger", TRIGGERS),
        "rule": tenancy.internal_or_none(request, query_text(request, "rule", ID_PATTERN, AN_ID)),
        "channel": tenancy.internal_or_none(
            request, query_text(request, "channel", ID_PATTERN, AN_ID)
        ),
    }
    wanted = {k: v for k, v in asked.items() if v is not None}
    before = None
    if cursor is not None:
        at, _, rid = cursor.partition(":")
        before = (int(at), rid)
    items, next_cursor = await _page(_store(request), before, size, wanted, namespace(request))
    return json_response({"items": items, "next_cursor": next_cursor})


async def _page(
    store: NotificationStore,
    before: tuple[int, str] | None,
    size: int,
    wanted: dict[str, str],
    space: str,
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``size`` records of the namespace's rules that match; reads a bounded number
    of batches, and the cursor moves past what was read, so a rare filter (or another
    namespace's records) pages on rather than reads without end."""
    items: list[dict[str, Any]] = []
    for _ in range(SCAN_BATCHES):
        batch = await store.records_page(before, SCAN_BATCH if wanted else size * 2)
        if not batch:
            return items, None
        for at, record in batch:
            before = (at, record.get("id", ""))
            mine = namespace_of(record.get("rule", "")) == space
            if mine and all(record.get(k) == v for k, v in wanted.items()):
                items.append(notification_view(record))
                if len(items) == size:
                    return items, f"{at:013d}:{before[1]}"
    assert before is not None
    return items, f"{before[0]:013d}:{before[1]}"
