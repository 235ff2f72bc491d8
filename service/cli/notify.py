"""``cronstream notify``: notification channels and rules, and what was told, through the API.

Secrets never go on the command line, where ``ps`` and shell history would keep them:
a webhook's signing secret, a Slack webhook's URL and an SMTP password are read from the
environment variable named by ``--secret-env``, ``--url-env`` or ``--password-env``. A
webhook channel made without a secret gets one from the service: it is printed once,
alone on stdout (``SECRET=$(cronstream notify channel put ops --webhook URL)``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from service.cli.client import ApiClient
from service.cli.common import add_client_options
from service.cli.output import emit
from service.domain.notifications import DeliveryStatus, Trigger

if TYPE_CHECKING:
    from service.cli.common import Subparsers

BASE = "/v1/notifications"
CHANNEL_COLUMNS = ("id", "target.type", "rate_per_minute", "secrets", "updated_at")
RULE_COLUMNS = ("id", "on", "channels", "threshold", "window_s", "cooldown_s", "enabled")
RECORD_COLUMNS = ("created_at", "status", "reason", "rule", "channel", "attempts", "summary")


def add_parsers(sub: Subparsers) -> None:
    parser = sub.add_parser("notify", help="notification channels, rules and what was told")
    kinds = parser.add_subparsers(dest="kind", required=True)
    _channel_parsers(kinds.add_parser("channel", help="where notifications go"))
    _rule_parsers(kinds.add_parser("rule", help="what is told, and to which channels"))
    told = kinds.add_parser("list", help="what was sent, suppressed or failed, newest first")
    told.add_argument("--status", choices=[str(s) for s in DeliveryStatus])
    told.add_argument("--trigger", choices=[str(t) for t in Trigger])
    told.add_argument("--rule")
    told.add_argument("--channel")
    told.add_argument("--limit", type=int, default=50)
    told.add_argument("--cursor")
    add_client_options(told)
    told.set_defaults(func=run_list)


def _channel_parsers(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    put = actions.add_parser("put", help="define or replace a channel")
    put.add_argument("id")
    how = put.add_mutually_exclusive_group(required=True)
    how.add_argument("--webhook", metavar="URL", help="a JSON POST, signed (Standard Webhooks)")
    how.add_argument("--slack", action="store_true", help="a Slack-compatible webhook (--url-env)")
    how.add_argument("--email", action="store_true", help="mail over SMTP (--host, --from, --to)")
    put.add_argument("--secret-env", help="webhook: the variable holding its signing secret")
    put.add_argument("--url-env", help="slack: the variable holding the webhook's URL")
    put.add_argument("--host", help="email: the SMTP server")
    put.add_argument("--port", type=int, default=25, help="email: its port (default 25)")
    put.add_argument("--starttls", action="store_true", help="email: upgrade with STARTTLS")
    put.add_argument("--username", help="email: log in as this user")
    put.add_argument("--password-env", help="email: the variable holding the password")
    put.add_argument("--from", dest="sender", help="email: the sender's address")
    put.add_argument("--to", action="append", default=[], help="email: a recipient (repeat)")
    put.add_argument("--rate", type=int, help="at most this many sends a minute (default 30)")
    put.add_argument("--timeout", type=int, help="seconds each attempt may take (default 10)")
    put.add_argument("--description", default="")
    _common(actions, ("list", "show", "delete"), run_channel)


def _rule_parsers(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    put = actions.add_parser("put", help="define or replace a rule")
    put.add_argument("id")
    put.add_argument("--on", required=True, choices=[str(t) for t in Trigger])
    put.add_argument("--channel", action="append", required=True, help="a channel (repeat)")
    put.add_argument("--schedule", help="only this schedule's trouble")
    put.add_argument("--workflow", help="only this workflow's runs")
    put.add_argument("--threshold", type=int, help="tell when more than N occur in a window")
    put.add_argument("--window", type=int, help="the window, in seconds (default 600)")
    put.add_argument("--cooldown", type=int, help="seconds to hold back repeats (default 300)")
    put.add_argument("--lag", type=int, help="ticker_behind: seconds overdue (default 60)")
    put.add_argument("--disabled", action="store_true", help="keep the rule, tell nothing")
    _common(actions, ("list", "show", "delete"), run_rule)


def _common(actions: Subparsers, names: tuple[str, ...], func: Any) -> None:
    """list, show and delete beside put; the API's options and the handler for all."""
    for name in names:
        action = actions.add_parser(name)
        if name != "list":
            action.add_argument("id")
    for action in actions.choices.values():
        add_client_options(action)
        action.set_defaults(func=func)


def _secret(variable: str | None, what: str) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise SystemExit(f"cronstream: {what}: the variable {variable} is not set")
    return value


def channel_body(args: argparse.Namespace) -> dict[str, Any]:
    target: dict[str, Any]
    if args.webhook:
        target = {"type": "webhook", "url": args.webhook}
        secret = _secret(args.secret_env, "--secret-env")
        if secret is not None:
            target["secret"] = secret
    elif args.slack:
        url = _secret(args.url_env or "CRONSTREAM_SLACK_URL", "--url-env")
        target = {"type": "slack", "url": url}
    else:
        target = {"type": "email", "host": args.host, "port": args.port, "from": args.sender}
        target |= {"to": args.to, "starttls": args.starttls}
        if args.username:
            target["username"] = args.username
            target["password"] = _secret(args.password_env, "--password-env") or ""
    body: dict[str, Any] = {"target": target, "description": args.description}
    if args.rate is not None:
        body["rate_per_minute"] = args.rate
    if args.timeout is not None:
        body["timeout_s"] = args.timeout
    return body


def rule_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"on": args.on, "channels": args.channel, "enabled": not args.disabled}
    optional = {
        "schedule_id": args.schedule,
        "workflow_id": args.workflow,
        "threshold": args.threshold,
        "window_s": args.window,
        "cooldown_s": args.cooldown,
        "lag_s": args.lag,
    }
    return body | {k: v for k, v in optional.items() if v is not None}


def run_channel(args: argparse.Namespace) -> int:
    return _run(args, "channels", CHANNEL_COLUMNS, channel_body)


def run_rule(args: argparse.Namespace) -> int:
    return _run(args, "rules", RULE_COLUMNS, rule_body)


def _run(args: argparse.Namespace, kind: str, columns: tuple[str, ...], body: Any) -> int:
    client = ApiClient(args.url, namespace=args.namespace)
    path = f"{BASE}/{kind}"
    if args.action == "list":
        emit(client.request("GET", path).body, args.output, columns)
    elif args.action == "show":
        emit(client.request("GET", f"{path}/{args.id}").body, args.output, columns)
    elif args.action == "delete":
        client.request("DELETE", f"{path}/{args.id}")
        print(f"deleted {kind[:-1]} {args.id}", file=sys.stderr)
    else:
        view = client.request("PUT", f"{path}/{args.id}", body(args)).body
        made = view.pop("secret", None)
        if made:
            print(made)
            print(f"signing secret of channel {args.id}: shown once, store it now", file=sys.stderr)
        else:
            emit(view, args.output, columns)
    return 0


def run_list(args: argparse.Namespace) -> int:
    client = ApiClient(args.url, namespace=args.namespace)
    query = {
        "status": args.status,
        "trigger": args.trigger,
        "rule": args.rule,
        "channel": args.channel,
        "limit": args.limit,
        "cursor": args.cursor,
    }
    page = client.request("GET", BASE, query={k: v for k, v in query.items() if v is not None})
    emit(page.body, args.output, RECORD_COLUMNS)
    return 0
