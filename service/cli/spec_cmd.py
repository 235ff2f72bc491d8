"""``cronstream spec next``: the next fire times of a spec, offline.

No server and no Redis: the same spec engine the service uses, run locally.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from pydantic import ValidationError

from service.cli.common import add_output_option
from service.cli.output import emit_document
from service.cli.spec_options import looks_like_interval, parse_interval
from service.domain.spec import Spec, SpecPreview, preview
from service.domain.timeutil import parse_instant, to_rfc3339

EXIT_USAGE = 2
OPTIONS = {"timezone": "--tz", "jitter": "--jitter", "start_at": "--start", "end_at": "--end"}
EXAMPLES = """\
examples:
  cronstream spec next "0 2 * * *" --tz Europe/Berlin --count 5
  cronstream spec next 15m --jitter 30s --schedule-id poller   # nominal and actual times
  cronstream spec next 1h/15m "0 9 * * 1-5" --exclude "0 9 * 12 *" --output yaml"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``spec`` and its sub-command ``next``."""
    spec = subparsers.add_parser("spec", help="evaluate schedule specs offline")
    commands = spec.add_subparsers(dest="spec_command", required=True)
    nxt = commands.add_parser(
        "next",
        help="print the next fire times of cron expressions and intervals",
        description="Print the next nominal fire times, one RFC 3339 UTC instant a line "
        "(with the actual, jittered time beside it when --jitter and --schedule-id are given).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    nxt.add_argument(
        "expr",
        nargs="+",
        metavar="EXPR",
        help="cron expression (quote it) or interval EVERY[/OFFSET], e.g. 15m or 1h/15m",
    )
    nxt.add_argument("--tz", default="UTC", help="IANA time zone (default UTC)")
    nxt.add_argument("--after", help="RFC 3339 instant to start after (default now)")
    nxt.add_argument("--count", type=int, default=10, help="how many times (default 10)")
    nxt.add_argument("--exclude", action="append", default=[], help="exclude_cron expression")
    nxt.add_argument("--start", help="RFC 3339 instant: no time before it")
    nxt.add_argument("--end", help="RFC 3339 instant: no time after it")
    nxt.add_argument("--jitter", default="0s", help="jitter, e.g. 30s (with --schedule-id)")
    nxt.add_argument("--schedule-id", help="schedule id the jitter is drawn for")
    nxt.add_argument("--json", action="store_true", help="same as --output json")
    add_output_option(nxt)
    nxt.set_defaults(func=run_spec_next)


def run_spec_next(args: argparse.Namespace) -> int:
    """Print the next times of ``args.expr``; exit 2 with the error on stderr if invalid."""
    if not 1 <= args.count <= 1000:
        return _fail("--count must be between 1 and 1000")
    try:
        spec = build_spec(args)
        after = _instant(args.after, "--after") if args.after else int(time.time() * 1000)
    except ValidationError as exc:
        return _fail(
            "; ".join(_message(error["loc"], error["msg"], args) for error in exc.errors())
        )
    except ValueError as exc:
        return _fail(str(exc))
    result = preview(spec, after, args.count, args.schedule_id)
    if not emit_document(result.model_dump(mode="json"), "json" if args.json else args.output):
        _print_times(result, jittered=bool(spec.jitter) and args.schedule_id is not None)
        if spec.jitter and args.schedule_id is None:
            sys.stderr.write(
                "note: each fire is delayed by up to the jitter, drawn from the schedule id; "
                "give --schedule-id to see the actual times\n"
            )
    return 0


def build_spec(args: argparse.Namespace) -> Spec:
    """The spec the arguments describe: each EXPR is an interval when it reads as one."""
    crons: list[str] = []
    intervals: list[dict[str, Any]] = []
    for expr in args.expr:
        if looks_like_interval(expr):
            intervals.append(parse_interval(expr))
        else:
            crons.append(expr)
    args.cron_texts = crons
    args.interval_texts = [e for e in args.expr if e not in crons]
    return Spec(
        cron=crons,
        intervals=intervals,
        exclude_cron=args.exclude,
        timezone=args.tz,
        jitter=args.jitter,
        start_at=_instant(args.start, "--start") if args.start else None,
        end_at=_instant(args.end, "--end") if args.end else None,
    )


def _instant(text: str, flag: str) -> int:
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None


def _print_times(result: SpecPreview, jittered: bool) -> None:
    for t in result.times:
        line = to_rfc3339(t.nominal)
        if jittered:
            line += "  " + to_rfc3339(t.actual)
        sys.stdout.write(line + "\n")


def _message(loc: tuple[int | str, ...], msg: str, args: argparse.Namespace) -> str:
    """Name the option or expression at fault the way the user typed it."""
    text = msg.removeprefix("Value error, ")
    if loc[:1] == ("cron",) and len(loc) > 1 and isinstance(loc[1], int):
        return f"{args.cron_texts[loc[1]]!r}: {text}"
    if loc[:1] == ("intervals",) and len(loc) > 1 and isinstance(loc[1], int):
        return f"{args.interval_texts[loc[1]]!r}: {text}"
    if loc[:1] == ("exclude_cron",) and len(loc) > 1 and isinstance(loc[1], int):
        return f"--exclude {args.exclude[loc[1]]!r}: {text}"
    option = OPTIONS.get(str(loc[0])) if loc else None
    return f"{option}: {text}" if option else text


def _fail(message: str) -> int:
    sys.stderr.write(f"cronstream spec next: {message}\n")
    return EXIT_USAGE
