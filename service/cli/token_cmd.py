"""``cronstream token``: create, list and revoke the API's bearer tokens.

These talk to Redis directly (REDIS_URL, or the embedded Redis under --data-dir), like
``migrate`` and ``archive``, not to the API: whoever can reach Redis holds every key
anyway, the first token can be made before any exists, and the API keeps no route
that mints credentials (a stolen token cannot make itself a longer-lived one).

A new token is printed once, alone on stdout (``TOKEN=$(cronstream token create ...)``);
only its SHA-256 is stored.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from service.cli.common import add_data_dir, add_output_option, settings, with_redis
from service.cli.output import emit_document, emit_table
from service.domain.ids import is_valid_id
from service.domain.timeutil import format_duration, parse_duration, to_rfc3339
from service.domain.tokens import (
    PREFIX,
    Rate,
    Scope,
    TokenRecord,
    check_token,
    parse_scopes,
    token_hash,
    token_id,
)
from service.store.keys import Keyspace

if TYPE_CHECKING:
    from service.cli.common import Subparsers

COLUMNS = ("id", "name", "scopes", "namespaces", "rate", "status", "created_at", "expires_at")
SCOPES_HELP = "comma-separated: " + ", ".join(s.value for s in Scope) + " (admin: all of them)"


def add_parsers(sub: Subparsers) -> None:
    token = sub.add_parser("token", help="API tokens: create, list, revoke (talks to Redis)")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a token; it is printed once")
    create.add_argument("--scopes", type=_scopes, required=True, help=SCOPES_HELP)
    create.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        type=_namespace,
        help="a namespace the token is for (repeatable; default: default)",
    )
    create.add_argument("--expires", type=_lifetime, help="lifetime, like 90d (default: never)")
    create.add_argument("--name", default="", help="what the token is for, shown by list")
    create.add_argument(
        "--rate",
        type=_rate,
        help="requests allowed, like 600/min (default $CRONSTREAM_RATE_LIMIT or 100/min)",
    )
    listing = actions.add_parser("list", help="tokens, oldest first, revoked and expired too")
    add_output_option(listing)
    revoke = actions.add_parser("revoke", help="refuse a token from now on")
    revoke.add_argument("token", help="the token's id (from list), or the token itself")
    actions.add_parser(
        "generate", help="print a new token and store nothing (for CRONSTREAM_ADMIN_TOKEN)"
    )
    for action in actions.choices.values():
        add_data_dir(action)
        action.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "generate":
        from service.store.tokens import new_token

        print(new_token())
        return 0
    action = {"create": _create, "list": _list, "revoke": _revoke}[args.action]

    async def work(redis: Redis, keys: Keyspace) -> int:
        return await action(redis, keys, args)

    return with_redis(args, work)


async def _create(redis: Redis, keys: Keyspace, args: argparse.Namespace) -> int:
    from service.store.tokens import NewToken, TokenStore, new_token

    token = new_token()
    spec = NewToken(
        name=args.name,
        scopes=args.scopes,
        rate=args.rate or settings(args).rate_limit,
        lifetime_ms=args.expires,
        namespaces=tuple(dict.fromkeys(args.namespaces or ["default"])),
    )
    created = await TokenStore(redis, keys).create(token, spec)
    if created is None:  # only a create of serve's first token is ever skipped
        raise RuntimeError("the token was not stored")
    print(token, flush=True)
    expires = to_rfc3339(created.expires_ms) if created.expires_ms else "never"
    print(
        f"token {created.id} ({', '.join(sorted(spec.scopes))}; {spec.rate}; expires {expires})"
        ": shown this once, store it now",
        file=sys.stderr,
    )
    return 0


async def _list(redis: Redis, keys: Keyspace, args: argparse.Namespace) -> int:
    from service.store.tokens import TokenStore

    seconds, micros = await redis.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    rows = [_row(record, now) for record in await TokenStore(redis, keys).list()]
    if not emit_document(rows, args.output):
        emit_table(rows, COLUMNS)
    return 0


async def _revoke(redis: Redis, keys: Keyspace, args: argparse.Namespace) -> int:
    from service.store.tokens import TokenStore

    ident = args.token
    if ident.startswith(PREFIX):
        ident = token_id(token_hash(check_token(ident)))
    outcome, when = await TokenStore(redis, keys).revoke(ident)
    if outcome == "unknown":
        print(f"cronstream: no token {ident!r}", file=sys.stderr)
        return 1
    at = to_rfc3339(when) if when else "?"
    print(f"token {ident} {'revoked' if outcome == 'revoked' else 'was already revoked'} at {at}")
    return 0


def _row(record: TokenRecord, now_ms: int) -> dict[str, Any]:
    def instant(ms: int | None) -> str | None:
        return to_rfc3339(ms) if ms else None

    return {
        "id": record.id,
        "name": record.name,
        "scopes": sorted(record.scopes),
        "namespaces": list(record.namespaces),
        "rate": str(record.rate),
        "status": str(record.status(now_ms)),
        "created_at": instant(record.created_ms),
        "expires_at": instant(record.expires_ms),
        "revoked_at": instant(record.revoked_ms),
        "last_used_at": instant(record.last_used_ms),
    }


def _scopes(text: str) -> frozenset[Scope]:
    try:
        return parse_scopes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _namespace(text: str) -> str:
    if not is_valid_id(text):
        raise argparse.ArgumentTypeError(
            f"a namespace is 1 to 128 letters, digits, '.', '_' or '-', not {text!r}"
        )
    return text


def _rate(text: str) -> Rate:
    try:
        return Rate.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _lifetime(text: str) -> int:
    try:
        ms = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if ms < 1000:
        raise argparse.ArgumentTypeError(f"a token lives at least 1s, not {format_duration(ms)}")
    return ms
