"""``cronstream spec next``: the next fire times of cron expressions, offline.

No server and no Redis: the same spec engine the service uses, run locally.
"""

from __future__ import annotations

import argparse
import sys
import time

import orjson
from pydantic import ValidationError

from service.domain.spec import Spec, preview
from service.domain.timeutil import parse_instant, to_rfc3339

EXIT_USAGE = 2


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``spec`` and its sub-command ``next``."""
    spec = subparsers.add_parser("spec", help="evaluate schedule specs offline")
    commands = spec.add_subparsers(dest="spec_command", required=True)
    nxt = commands.add_parser(
        "next",
        help="print the next fire times of cron expressions",
        description="Print the next nominal fire times, one RFC 3339 UTC instant a line.",
    )
    nxt.add_argument("expr", nargs="+", metavar="EXPR", help="cron expression (quote it)")
    nxt.add_argument("--tz", default="UTC", help="IANA time zone (default UTC)")
    nxt.add_argument("--after", help="RFC 3339 instant to start after (default now)")
    nxt.add_argument("--count", type=int, default=10, help="how many times (default 10)")
    nxt.add_argument("--exclude", action="append", default=[], help="exclude_cron expression")
    nxt.add_argument("--jitter", default="0s", help="jitter, e.g. 30s (with --schedule-id)")
    nxt.add_argument("--schedule-id", help="schedule id the jitter is drawn for")
    nxt.add_argument("--json", action="store_true", help="print a JSON document")
    nxt.set_defaults(func=run_spec_next)


def run_spec_next(args: argparse.Namespace) -> int:
    """Print the next times of ``args.expr``; exit 2 with the error on stderr if invalid."""
    if not 1 <= args.count <= 1000:
        return _fail("--count must be between 1 and 1000")
    try:
        spec = Spec(cron=args.expr, exclude_cron=args.exclude, timezone=args.tz, jitter=args.jitter)
        after = parse_instant(args.after) if args.after else int(time.time() * 1000)
    except ValidationError as exc:
        return _fail(
            "; ".join(_message(error["loc"], error["msg"], args) for error in exc.errors())
        )
    except ValueError as exc:
        return _fail(f"--after: {exc}")
    result = preview(spec, after, args.count, args.schedule_id)
    if args.json:
        sys.stdout.write(orjson.dumps(result.model_dump(mode="json")).decode() + "\n")
    else:
        sys.stdout.writelines(to_rfc3339(t.nominal) + "\n" for t in result.times)
    return 0


def _message(loc: tuple[int | str, ...], msg: str, args: argparse.Namespace) -> str:
    """Name the option or expression at fault the way the user typed it."""
    text = msg.removeprefix("Value error, ")
    if loc[:1] == ("cron",) and len(loc) > 1 and isinstance(loc[1], int):
        return f"{args.expr[loc[1]]!r}: {text}"
    if loc[:1] == ("exclude_cron",) and len(loc) > 1 and isinstance(loc[1], int):
        return f"--exclude {args.exclude[loc[1]]!r}: {text}"
    option = {"timezone": "--tz", "jitter": "--jitter"}.get(str(loc[0])) if loc else None
    return f"{option}: {text}" if option else text


def _fail(message: str) -> int:
    sys.stderr.write(f"cronstream spec next: {message}\n")
    return EXIT_USAGE
