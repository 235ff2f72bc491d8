"""``cronstream namespace``: set and show namespaces' quotas.

Like ``token``, these talk to Redis directly (REDIS_URL, or the embedded Redis under
--data-dir), not to the API: a namespace's limits are the operator's, not a tenant's to
lift with its own token.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from service.cli.common import add_data_dir, add_output_option, with_redis
from service.cli.output import emit_document, emit_table
from service.domain.namespaces import DEFAULT, Quota, is_valid_namespace
from service.domain.timeutil import format_duration, parse_duration
from service.store.keys import Keyspace

if TYPE_CHECKING:
    from service.cli.common import Subparsers

COLUMNS = ("namespace", "max_schedules", "min_interval", "max_catchup")
NONE = "none"


def add_parsers(sub: Subparsers) -> None:
    parser = sub.add_parser("namespace", help="namespaces' quotas (talks to Redis directly)")
    actions = parser.add_subparsers(dest="action", required=True)
    setting = actions.add_parser("set", help="set or lift (none) a namespace's limits")
    setting.add_argument("namespace", type=_namespace)
    setting.add_argument(
        "--max-schedules", type=_count, help="schedules the namespace may hold, or none"
    )
    setting.add_argument(
        "--min-interval",
        type=_interval,
        help="the shortest time between two fires of a schedule, like 1m, or none",
    )
    setting.add_argument(
        "--max-catchup", type=_count, help="the largest policy.catchup_max allowed, or none"
    )
    show = actions.add_parser("show", help="namespaces' limits (default: all with limits)")
    show.add_argument("namespace", nargs="?", type=_namespace)
    for action in (setting, show):
        add_data_dir(action)
        add_output_option(action)
        action.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    async def work(redis: Redis, keys: Keyspace) -> int:
        from service.store.namespaces import NamespaceQuotas

        quotas = NamespaceQuotas(redis, keys)
        if args.action == "set":
            changes = {
                "max_schedules": args.max_schedules,
                "min_interval_ms": args.min_interval,
                "max_catchup": args.max_catchup,
            }
            given = {k: (None if v == NONE else v) for k, v in changes.items() if v is not None}
            await quotas.set(args.namespace, given)
            names = [args.namespace]
        else:
            names = [args.namespace] if args.namespace else await quotas.names() or [DEFAULT]
        rows = [_row(name, await quotas.get(name)) for name in names]
        if not emit_document(rows, args.output):
            emit_table(rows, COLUMNS)
        return 0

    return with_redis(args, work)


def _row(name: str, quota: Quota) -> dict[str, Any]:
    row: dict[str, Any] = {"namespace": name, **asdict(quota)}
    interval = row.pop("min_interval_ms")
    row["min_interval"] = format_duration(interval) if interval is not None else None
    return row


def _namespace(text: str) -> str:
    if not is_valid_namespace(text):
        raise argparse.ArgumentTypeError(
            f"a namespace is 1 to 128 letters, digits, '.', '_' or '-', not {text!r}"
        )
    return text


def _count(text: str) -> int | str:
    if text == NONE:
        return NONE
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number from 1, or {NONE}; not {text!r}")
    return int(text)


def _interval(text: str) -> int | str:
    if text == NONE:
        return NONE
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
