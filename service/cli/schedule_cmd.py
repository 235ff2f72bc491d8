"""``cronstream schedule``: create and manage schedules through the HTTP API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from service.cli.client import ApiClient
from service.cli.common import add_client_options, idempotency_header, read_json_file
from service.cli.output import emit

if TYPE_CHECKING:
    from service.cli.common import Subparsers

COLUMNS = ("id", "workflow_id", "status", "spec.cron", "spec.timezone", "next_run_at")
HISTORY_COLUMNS = ("at", "type", "actor", "position")
TRIGGER_COLUMNS = ("run_id", "fired", "skipped", "dropped", "duplicate")
BACKFILL_COLUMNS = ("nominal_times", "fired", "skipped", "dropped", "already_backfilled")
FIRE_COLUMNS = ("nominal_time", "outcome", "detail")


def add_parsers(sub: Subparsers) -> None:
    schedule = sub.add_parser("schedule", help="create and manage schedules")
    actions = schedule.add_subparsers(dest="action", required=True)
    _add_writes(actions)
    _add_reads(actions)
    _add_fires(actions)
    for action in actions.choices.values():
        add_client_options(action)
        action.set_defaults(func=run)


def _add_writes(actions: Subparsers) -> None:
    for name, text in (("create", "create a schedule"), ("update", "change a schedule")):
        action = actions.add_parser(name, help=text)
        if name == "update":
            action.add_argument("id")
            action.add_argument("--if-match", help="only if the schedule is at this version")
        else:
            action.add_argument("--id")
            action.add_argument("--paused", action="store_true")
            action.add_argument("--note")
            action.add_argument("--idempotency-key")
        action.add_argument("-f", "--file", help="JSON body (create) or merge patch (update)")
        action.add_argument("--workflow", dest="workflow_id")
        action.add_argument("--name")
        action.add_argument("--description")
        action.add_argument("--cron", action="append", help="cron expression (repeatable)")
        action.add_argument("--every", action="append", help="interval such as 15m (repeatable)")
        action.add_argument("--tz", dest="timezone", help="IANA time zone (default UTC)")
        action.add_argument("--tag", action="append", dest="tags")
        action.add_argument("--input", help="run input as JSON")


def _add_reads(actions: Subparsers) -> None:
    listing = actions.add_parser("list", help="list schedules")
    listing.add_argument("--workflow", dest="workflow_id")
    listing.add_argument("--status", choices=("active", "paused", "completed"))
    listing.add_argument("--tag")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")
    for name in ("get", "delete", "history"):
        action = actions.add_parser(name, help=f"{name} of a schedule")
        action.add_argument("id")
    for name in ("pause", "resume"):
        action = actions.add_parser(name, help=f"{name} a schedule")
        action.add_argument("id")
        action.add_argument("--note", default="")


def _add_fires(actions: Subparsers) -> None:
    trigger = actions.add_parser("trigger", help="run the schedule's workflow now")
    trigger.add_argument("id")
    trigger.add_argument("--input", help="run input as JSON (default: the schedule's)")
    trigger.add_argument("--overlap", help="overlap policy for this run")
    trigger.add_argument("--idempotency-key")
    backfill = actions.add_parser("backfill", help="run every nominal time in a range")
    backfill.add_argument("id")
    backfill.add_argument("--start", required=True, help="RFC 3339 instant")
    backfill.add_argument("--end", required=True, help="RFC 3339 instant")
    backfill.add_argument("--overlap")
    fires = actions.add_parser("fires", help="the outcome of every nominal time in a range")
    fires.add_argument("id")
    fires.add_argument("--from", dest="start", required=True)
    fires.add_argument("--to", dest="end", required=True)


def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.action](ApiClient(args.url), args)


def body_from_options(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` (a file's body) with the fields given as options set over it."""
    body = dict(base)
    for name in ("workflow_id", "name", "description", "tags"):
        value = getattr(args, name, None)
        if value is not None:
            body[name] = value
    spec = dict(body.get("spec") or {})
    if args.cron is not None:
        spec["cron"] = args.cron
    if args.every is not None:
        spec["intervals"] = [{"every": every} for every in args.every]
    if args.timezone is not None:
        spec["timezone"] = args.timezone
    if spec:
        body["spec"] = spec
    if args.input is not None:
        body["input"] = orjson.loads(args.input)
    return body


def _file_body(args: argparse.Namespace) -> dict[str, Any]:
    return body_from_options(args, read_json_file(args.file) if args.file else {})


def _create(client: ApiClient, args: argparse.Namespace) -> int:
    body = _file_body(args)
    for name in ("id", "note"):
        if getattr(args, name):
            body[name] = getattr(args, name)
    if args.paused:
        body["paused"] = True
    headers = idempotency_header(args.idempotency_key)
    reply = client.request("POST", "/v1/schedules", body, headers=headers)
    emit(reply.body, args.output, COLUMNS)
    return 0


def _update(client: ApiClient, args: argparse.Namespace) -> int:
    headers = {"If-Match": f'"{args.if_match}"'} if args.if_match else {}
    reply = client.request("PATCH", f"/v1/schedules/{args.id}", _file_body(args), headers=headers)
    emit(reply.body, args.output, COLUMNS)
    return 0


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    query = {k: getattr(args, k) for k in ("workflow_id", "status", "tag", "limit", "cursor")}
    emit(client.request("GET", "/v1/schedules", query=query).body, args.output, COLUMNS)
    return 0


def _get(client: ApiClient, args: argparse.Namespace) -> int:
    emit(client.request("GET", f"/v1/schedules/{args.id}").body, args.output, COLUMNS)
    return 0


def _delete(client: ApiClient, args: argparse.Namespace) -> int:
    client.request("DELETE", f"/v1/schedules/{args.id}")
    print(f"deleted schedule {args.id}", file=sys.stderr)
    return 0


def _pause_or_resume(client: ApiClient, args: argparse.Namespace) -> int:
    reply = client.request("POST", f"/v1/schedules/{args.id}/{args.action}", {"note": args.note})
    emit(reply.body, args.output, COLUMNS)
    return 0


def _trigger(client: ApiClient, args: argparse.Namespace) -> int:
    payload: dict[str, Any] = {}
    if args.input is not None:
        payload["input"] = orjson.loads(args.input)
    if args.overlap:
        payload["overlap"] = args.overlap
    headers = idempotency_header(args.idempotency_key)
    reply = client.request("POST", f"/v1/schedules/{args.id}/trigger", payload, headers=headers)
    emit(reply.body, args.output, TRIGGER_COLUMNS)
    return 0


def _backfill(client: ApiClient, args: argparse.Namespace) -> int:
    window: dict[str, Any] = {"start": args.start, "end": args.end}
    if args.overlap:
        window["overlap"] = args.overlap
    reply = client.request("POST", f"/v1/schedules/{args.id}/backfill", window)
    emit(reply.body, args.output, BACKFILL_COLUMNS)
    return 0


def _fires(client: ApiClient, args: argparse.Namespace) -> int:
    query = {"from": args.start, "to": args.end}
    reply = client.request("GET", f"/v1/schedules/{args.id}/fires", query=query)
    emit(reply.body, args.output, FIRE_COLUMNS)
    return 0


def _history(client: ApiClient, args: argparse.Namespace) -> int:
    reply = client.request("GET", f"/v1/schedules/{args.id}/history", query={"limit": 1000})
    emit(reply.body, args.output, HISTORY_COLUMNS)
    return 0


ACTIONS: dict[str, Callable[[ApiClient, argparse.Namespace], int]] = {
    "create": _create,
    "update": _update,
    "list": _list,
    "get": _get,
    "delete": _delete,
    "pause": _pause_or_resume,
    "resume": _pause_or_resume,
    "trigger": _trigger,
    "backfill": _backfill,
    "fires": _fires,
    "history": _history,
}
