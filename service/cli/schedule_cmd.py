"""``cronstream schedule``: create and manage schedules through the HTTP API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from service.cli import history_view, schedule_describe
from service.cli.client import ApiClient
from service.cli.common import (
    add_client_options,
    idempotency_header,
    instant_text,
    json_value,
)
from service.cli.output import Column, emit, emit_document, emit_record, path_column
from service.cli.schedule_flags import FIELD_FLAGS, UNSETTABLE, add_schedule_flags, schedule_body
from service.domain.policies import OverlapPolicy

if TYPE_CHECKING:
    from service.cli.common import Subparsers

COLUMNS: tuple[str | Column, ...] = (
    "id",
    "workflow_id",
    "status",
    Column("SPEC", lambda row: schedule_describe.spec_summary(row.get("spec") or {})),
    path_column("spec.timezone", "TZ"),
    "next_run_at",
)
RECORD_FIELDS: tuple[str | Column, ...] = (
    "id",
    "name",
    "workflow_id",
    "status",
    "note",
    "spec.cron",
    Column("SPEC.INTERVALS", lambda r: schedule_describe.intervals_text(r.get("spec") or {})),
    "spec.exclude_cron",
    "spec.timezone",
    "spec.jitter",
    "spec.start_at",
    "spec.end_at",
    *(path_column(f"policy.{name}") for name in schedule_describe.POLICY_FIELDS),
    "max_actions",
    "input",
    "tags",
    "version",
    "created_at",
    "updated_at",
    "next_run_at",
    "last_run_at",
    "last_run_status",
)
TRIGGER_COLUMNS = ("run_id", "fired", "skipped", "dropped", "duplicate")
BACKFILL_COLUMNS = ("nominal_times", "fired", "skipped", "dropped", "already_backfilled")
FIRE_COLUMNS: tuple[str | Column, ...] = (
    "nominal_time",
    "outcome",
    Column("RUN_ID", lambda row: schedule_describe.fire_run_id(row.get("detail") or {})),
    Column("DETAIL", lambda row: schedule_describe.fire_detail(row.get("detail") or {})),
)
OVERLAPS = [p.value for p in OverlapPolicy]

CREATE_EXAMPLES = """\
examples:
  cronstream schedule create --id nightly --workflow scan --cron "0 2 * * *" --tz Europe/Berlin
  cronstream schedule create --workflow poll --interval 15m --jitter 30s --overlap buffer_one \\
      --catchup all --catchup-window 6h --catchup-max 24 --input '{"depth": 2}'
  cronstream schedule update nightly --overlap allow_all --max-actions 10 --unset spec.end_at"""


def add_parsers(sub: Subparsers) -> None:
    schedule = sub.add_parser("schedule", help="create and manage schedules")
    actions = schedule.add_subparsers(dest="action", required=True)
    _add_writes(actions)
    _add_reads(actions)
    _add_fires(actions)
    for action in actions.choices.values():
        add_client_options(action)
        action.set_defaults(func=run, field_flags=FIELD_FLAGS)


def _add_writes(actions: Subparsers) -> None:
    for name, text in (("create", "create a schedule"), ("update", "change a schedule")):
        action = actions.add_parser(
            name,
            help=text,
            description=f"{text.capitalize()}: every spec and policy field has a flag.",
            epilog=CREATE_EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == "update":
            action.add_argument("id")
            action.add_argument(
                "--if-match", metavar="VERSION", help="only if the schedule is at this version"
            )
            action.add_argument(
                "--unset",
                action="append",
                choices=UNSETTABLE,
                metavar="FIELD",
                help=f"put a field back to its default (repeatable): {', '.join(UNSETTABLE)}",
            )
        else:
            action.add_argument("--id", help="the schedule's id (default: a generated one)")
            action.add_argument("--paused", action="store_true", help="create it paused")
            action.add_argument("--note", help="why (shown with the state)")
            action.add_argument(
                "--idempotency-key", metavar="KEY", help="a retry with it creates nothing twice"
            )
        add_schedule_flags(action)


def _add_reads(actions: Subparsers) -> None:
    listing = actions.add_parser("list", help="list schedules")
    listing.add_argument("--workflow", dest="workflow_id")
    listing.add_argument("--status", choices=("active", "paused", "completed"))
    listing.add_argument("--tag")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")
    for name, text in (("get", "read a schedule"), ("delete", "delete a schedule")):
        actions.add_parser(name, help=text).add_argument("id")
    describe = actions.add_parser(
        "describe", help="a schedule in words: spec, policy, state, next and recent actions"
    )
    describe.add_argument("id")
    describe.add_argument("--next", type=int, default=5, metavar="N", help="next N actions")
    describe.add_argument("--recent", type=int, default=10, metavar="N", help="recent N actions")
    history = actions.add_parser("history", help="who changed what and when, one change a line")
    history.add_argument("id")
    history.add_argument("--limit", type=int, default=100)
    history.add_argument("--cursor")
    for name in ("pause", "resume"):
        action = actions.add_parser(name, help=f"{name} a schedule")
        action.add_argument("id")
        action.add_argument("--note", default="")


def _add_fires(actions: Subparsers) -> None:
    trigger = actions.add_parser("trigger", help="run the schedule's workflow now")
    trigger.add_argument("id")
    trigger.add_argument(
        "--input", type=json_value, help="run input as JSON (default: the schedule's)"
    )
    trigger.add_argument("--overlap", choices=OVERLAPS, help="overlap policy for this run")
    trigger.add_argument("--idempotency-key")
    backfill = actions.add_parser("backfill", help="run every nominal time in a range")
    backfill.add_argument("id")
    backfill.add_argument("--start", required=True, type=instant_text, help="RFC 3339 instant")
    backfill.add_argument("--end", required=True, type=instant_text, help="RFC 3339 instant")
    backfill.add_argument("--overlap", choices=OVERLAPS)
    fires = actions.add_parser("fires", help="the outcome of every nominal time in a range")
    fires.add_argument("id")
    fires.add_argument("--from", dest="start", required=True, type=instant_text)
    fires.add_argument("--to", dest="end", required=True, type=instant_text)


def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.action](ApiClient(args.url, namespace=args.namespace), args)


def _create(client: ApiClient, args: argparse.Namespace) -> int:
    body = schedule_body(args)
    for name in ("id", "note"):
        if getattr(args, name):
            body[name] = getattr(args, name)
    if args.paused:
        body["paused"] = True
    headers = idempotency_header(args.idempotency_key)
    reply = client.request("POST", "/v1/schedules", body, headers=headers)
    _show(reply.body, args.output)
    return 0


def _update(client: ApiClient, args: argparse.Namespace) -> int:
    patch = schedule_body(args)
    if not patch:
        raise ValueError("nothing to change: give at least one flag (see --help)")
    headers = {"If-Match": f'"{args.if_match}"'} if args.if_match else {}
    reply = client.request("PATCH", f"/v1/schedules/{args.id}", patch, headers=headers)
    _show(reply.body, args.output)
    return 0


def _show(schedule: Any, fmt: str) -> None:
    """A schedule as a document, or as ``FIELD value`` lines."""
    if not emit_document(schedule, fmt) and schedule is not None:
        emit_record(schedule, RECORD_FIELDS, sys.stdout)


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    query = {k: getattr(args, k) for k in ("workflow_id", "status", "tag", "limit", "cursor")}
    emit(client.request("GET", "/v1/schedules", query=query).body, args.output, COLUMNS)
    return 0


def _get(client: ApiClient, args: argparse.Namespace) -> int:
    _show(client.request("GET", f"/v1/schedules/{args.id}").body, args.output)
    return 0


def _describe(client: ApiClient, args: argparse.Namespace) -> int:
    if not (1 <= args.next <= 1000 and 1 <= args.recent <= 100):
        raise ValueError("--next must be 1-1000 and --recent 1-100")
    report = schedule_describe.gather(client, args.id, args.next, args.recent)
    if not emit_document(report, args.output):
        sys.stdout.write(schedule_describe.render(report))
    return 0


def _delete(client: ApiClient, args: argparse.Namespace) -> int:
    client.request("DELETE", f"/v1/schedules/{args.id}")
    print(f"deleted schedule {args.id}", file=sys.stderr)
    return 0


def _pause_or_resume(client: ApiClient, args: argparse.Namespace) -> int:
    reply = client.request("POST", f"/v1/schedules/{args.id}/{args.action}", {"note": args.note})
    _show(reply.body, args.output)
    return 0


def _trigger(client: ApiClient, args: argparse.Namespace) -> int:
    payload: dict[str, Any] = {}
    if args.input is not None:
        payload["input"] = args.input.value
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
    if args.output == "table" and reply.body.get("truncated"):
        print("more: the range holds more times; narrow --from/--to", file=sys.stderr)
    return 0


def _history(client: ApiClient, args: argparse.Namespace) -> int:
    query = {"limit": args.limit, "cursor": args.cursor}
    reply = client.request("GET", f"/v1/schedules/{args.id}/history", query=query)
    history_view.emit_history(reply.body, args.output)
    return 0


ACTIONS: dict[str, Callable[[ApiClient, argparse.Namespace], int]] = {
    "create": _create,
    "update": _update,
    "list": _list,
    "get": _get,
    "describe": _describe,
    "delete": _delete,
    "pause": _pause_or_resume,
    "resume": _pause_or_resume,
    "trigger": _trigger,
    "backfill": _backfill,
    "fires": _fires,
    "history": _history,
}
