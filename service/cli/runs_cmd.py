"""``cronstream runs``: run history; cancel and retry runs, through the HTTP API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from service.cli.client import ApiClient
from service.cli.common import add_client_options
from service.cli.output import emit, emit_document, emit_record, emit_table

if TYPE_CHECKING:
    from service.cli.common import Subparsers

COLUMNS = (
    "id",
    "schedule_id",
    "workflow_id",
    "trigger.type",
    "status",
    "queued_at",
    "finished_at",
)
RECORD_FIELDS = (
    "id",
    "schedule_id",
    "workflow_id",
    "trigger.type",
    "nominal_time",
    "status",
    "input",
    "queued_at",
    "started_at",
    "finished_at",
    "cancel_requested",
    "dead_letter_reason",
)
ATTEMPT_COLUMNS = ("attempt", "outcome", "status", "error", "started_at", "finished_at")
ACTION_COLUMNS = ("run_id", "outcome")
FILTERS = ("schedule_id", "workflow_id", "status", "trigger", "limit", "cursor")


def add_parsers(sub: Subparsers) -> None:
    runs = sub.add_parser("runs", help="run history; cancel and retry runs")
    actions = runs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="runs, newest first")
    listing.add_argument("--schedule", dest="schedule_id")
    listing.add_argument("--workflow", dest="workflow_id")
    listing.add_argument("--status")
    listing.add_argument("--trigger", choices=("schedule", "manual", "api", "backfill"))
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")
    for name in ("get", "cancel", "retry"):
        action = actions.add_parser(name, help=f"{name} a run")
        action.add_argument("id")
        if name == "cancel":
            action.add_argument("--terminate", action="store_true", help="stop it at once")
    for action in actions.choices.values():
        add_client_options(action)
        action.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.action](ApiClient(args.url, namespace=args.namespace), args)


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    query = {k: getattr(args, k) for k in FILTERS}
    emit(client.request("GET", "/v1/runs", query=query).body, args.output, COLUMNS)
    return 0


def _get(client: ApiClient, args: argparse.Namespace) -> int:
    reply = client.request("GET", f"/v1/runs/{args.id}")
    if not emit_document(reply.body, args.output):
        emit_record(reply.body, RECORD_FIELDS, sys.stdout)
        sys.stdout.write("\n")
        emit_table(reply.body["attempts"], ATTEMPT_COLUMNS)
    return 0


def _cancel(client: ApiClient, args: argparse.Namespace) -> int:
    reply = client.request("POST", f"/v1/runs/{args.id}/cancel", {"terminate": args.terminate})
    emit(reply.body, args.output, ACTION_COLUMNS)
    return 0


def _retry(client: ApiClient, args: argparse.Namespace) -> int:
    reply = client.request("POST", f"/v1/runs/{args.id}/retry", {})
    emit(reply.body, args.output, ACTION_COLUMNS)
    return 0


ACTIONS: dict[str, Callable[[ApiClient, argparse.Namespace], int]] = {
    "list": _list,
    "get": _get,
    "cancel": _cancel,
    "retry": _retry,
}
