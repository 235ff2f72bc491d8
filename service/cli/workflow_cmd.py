"""``cronstream workflow``: define and inspect workflows through the HTTP API."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from service.cli.client import ApiClient
from service.cli.common import add_client_options, idempotency_header, json_value, read_json_file
from service.cli.output import emit, emit_document, emit_record

if TYPE_CHECKING:
    from service.cli.common import Subparsers

COLUMNS = ("id", "name", "target.type", "version", "updated_at")
RECORD_FIELDS = (
    "id",
    "name",
    "description",
    "target.type",
    "target.url",
    "target.method",
    "target.handler",
    "input_schema",
    "retry",
    "timeout",
    "version",
    "created_at",
    "updated_at",
)


def _add_put(actions: Subparsers) -> None:
    put = actions.add_parser("put", help="define or replace a workflow")
    put.add_argument("id")
    put.add_argument("-f", "--file", help="JSON body file ('-' for stdin)")
    put.add_argument("--name")
    put.add_argument("--http", metavar="URL", help="target: an HTTP webhook")
    put.add_argument("--method", default=None)
    put.add_argument(
        "--secret-env",
        metavar="VAR",
        help="sign deliveries with the secret in this environment variable of the workers",
    )
    put.add_argument(
        "--signing",
        choices=("env", "stored"),
        help="sign with the secret in --secret-env's variable (env) or with the secrets "
        "`workflow secret create` stores (stored)",
    )
    put.add_argument(
        "--body",
        choices=("input", "envelope"),
        help="a delivery's body: the run's input, or an envelope naming the fire around it",
    )
    put.add_argument(
        "--header",
        action="append",
        default=[],
        type=header_pair,
        metavar="NAME=VALUE",
        help="a header sent with every delivery (repeatable)",
    )
    put.add_argument("--timeout", metavar="DURATION", help="an attempt's time limit (e.g. 30s)")
    put.add_argument("--max-attempts", type=int, metavar="N", help="attempts before a run fails")
    put.add_argument("--python", metavar="MODULE:FUNCTION", help="target: a Python handler")
    put.add_argument("--none", action="store_true", help="target: none (the event is the action)")
    put.add_argument("--input-schema", metavar="FILE", help="JSON Schema file for run inputs")


def add_parsers(sub: Subparsers) -> None:
    workflow = sub.add_parser("workflow", help="define and inspect workflows")
    actions = workflow.add_subparsers(dest="action", required=True)
    _add_put(actions)
    for name in ("get", "delete"):
        action = actions.add_parser(name, help=f"{name} a workflow")
        action.add_argument("id")
    listing = actions.add_parser("list", help="list workflows")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")
    run_now = actions.add_parser("run", help="run a workflow now (trigger: manual)")
    run_now.add_argument("id")
    run_now.add_argument("--input", type=json_value, help="run input as JSON")
    run_now.add_argument("--idempotency-key")
    for action in actions.choices.values():
        add_client_options(action)
        action.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.action](ApiClient(args.url, namespace=args.namespace), args)


def put_body(args: argparse.Namespace) -> dict[str, Any]:
    """The PUT body: the file's, with the name, target and input schema given as options."""
    body: dict[str, Any] = read_json_file(args.file) if args.file else {}
    if args.name is not None:
        body["name"] = args.name
    if args.http:
        body["target"] = _http_target(args)
    elif args.python:
        body["target"] = {"type": "python", "handler": args.python}
    elif args.none:
        body["target"] = {"type": "none"}
    if args.input_schema:
        body["input_schema"] = read_json_file(args.input_schema)
    if args.timeout:
        body["timeout"] = args.timeout
    if args.max_attempts is not None:
        body["retry"] = {**body.get("retry", {}), "max_attempts": args.max_attempts}
    return body


def header_pair(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` (for --header)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    return name.strip(), value


def _http_target(args: argparse.Namespace) -> dict[str, Any]:
    target: dict[str, Any] = {"type": "http", "url": args.http}
    optional = {
        "method": args.method,
        "secret_env": args.secret_env,
        "signing": args.signing,
        "body": args.body,
    }
    target.update({name: value for name, value in optional.items() if value})
    headers = dict(args.header)
    if headers:
        target["headers"] = headers
    return target


def _put(client: ApiClient, args: argparse.Namespace) -> int:
    reply = client.request("PUT", f"/v1/workflows/{args.id}", put_body(args))
    emit(reply.body, args.output, COLUMNS)
    return 0


def _get(client: ApiClient, args: argparse.Namespace) -> int:
    workflow = client.request("GET", f"/v1/workflows/{args.id}").body
    if not emit_document(workflow, args.output):
        emit_record(workflow, RECORD_FIELDS, sys.stdout)
    return 0


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    query = {"limit": args.limit, "cursor": args.cursor}
    emit(client.request("GET", "/v1/workflows", query=query).body, args.output, COLUMNS)
    return 0


def _run_now(client: ApiClient, args: argparse.Namespace) -> int:
    body = {"input": args.input.value} if args.input is not None else {}
    headers = idempotency_header(args.idempotency_key)
    reply = client.request("POST", f"/v1/workflows/{args.id}/runs", body, headers=headers)
    emit(reply.body, args.output, ("run_id", "duplicate"))
    return 0


def _delete(client: ApiClient, args: argparse.Namespace) -> int:
    client.request("DELETE", f"/v1/workflows/{args.id}")
    print(f"deleted workflow {args.id}", file=sys.stderr)
    return 0


ACTIONS: dict[str, Callable[[ApiClient, argparse.Namespace], int]] = {
    "put": _put,
    "get": _get,
    "list": _list,
    "run": _run_now,
    "delete": _delete,
}
