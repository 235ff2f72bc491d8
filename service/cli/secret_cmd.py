"""``cronstream workflow secret``: a workflow's stored signing secrets, through the API;
``cronstream secret-key generate``: a new CRONSTREAM_SECRET_KEY.

A secret made by ``create`` or ``rotate`` is printed once, alone on stdout
(``SECRET=$(cronstream workflow secret create hook)``), its id on stderr; the service
never shows it again.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from service.cli.client import ApiClient
from service.cli.common import add_client_options, duration_text
from service.cli.output import emit

if TYPE_CHECKING:
    from service.cli.common import Subparsers

COLUMNS = ("id", "created_at", "expires_at")


def add_parsers(sub: Subparsers) -> None:
    """``secret`` under ``workflow`` (added before this), and ``secret-key``."""
    secret = _subcommands(sub.choices["workflow"]).add_parser(
        "secret", help="stored signing secrets: create, rotate, list, revoke"
    )
    actions = secret.add_subparsers(dest="secret_action", required=True)
    actions.add_parser("create", help="make the workflow's first secret; printed once")
    rotate = actions.add_parser(
        "rotate", help="make a new secret (printed once); the live ones end after --grace"
    )
    rotate.add_argument(
        "--grace", type=duration_text, help="how long the old ones stay live (default 1d; 0: now)"
    )
    actions.add_parser("list", help="the live secrets: ids and times, never a secret")
    actions.add_parser("revoke", help="end a secret now")
    for name, action in actions.choices.items():
        action.add_argument("id", help="the workflow's id")
        if name == "revoke":
            action.add_argument("secret_id", help="the secret's id (from list)")
        add_client_options(action)
        action.set_defaults(func=run)
    key = sub.add_parser("secret-key", help="the key stored signing secrets are encrypted with")
    key_actions = key.add_subparsers(dest="key_action", required=True)
    generate = key_actions.add_parser(
        "generate", help="print a new CRONSTREAM_SECRET_KEY (base64 of 32 random bytes)"
    )
    generate.set_defaults(func=_generate)


def _subcommands(parser: argparse.ArgumentParser) -> Subparsers:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError(f"{parser.prog} has no sub-commands")


def run(args: argparse.Namespace) -> int:
    client = ApiClient(args.url, namespace=args.namespace)
    path = f"/v1/workflows/{args.id}/signing-secrets"
    if args.secret_action == "list":
        emit(client.request("GET", path).body, args.output, COLUMNS)
        return 0
    if args.secret_action == "revoke":
        client.request("DELETE", f"{path}/{args.secret_id}")
        print(f"revoked signing secret {args.secret_id} of workflow {args.id}", file=sys.stderr)
        return 0
    if args.secret_action == "rotate":
        body: dict[str, Any] = {} if args.grace is None else {"grace": args.grace}
        made = client.request("POST", f"{path}/rotate", body).body
    else:
        made = client.request("POST", path).body
    print(made["secret"])
    print(
        f"signing secret {made['id']} of workflow {args.id}: shown once, store it now",
        file=sys.stderr,
    )
    return 0


def _generate(args: argparse.Namespace) -> int:
    from service.store.secrets import generate_key

    print(generate_key())
    return 0
