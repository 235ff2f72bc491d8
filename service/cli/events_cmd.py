"""``cronstream events``: the event feed, as a page (``list``) or followed (``tail``).

``tail`` reads ``GET /v1/events/stream`` (Server-Sent Events) and prints each event
as it comes, flushed, so it can feed a pipe. It starts now, at the start of the log,
at an instant or after a cursor (``--from``); when the connection drops it
reconnects from the last event id it saw (``Last-Event-ID``), nothing missed and
nothing twice, giving up after ``MAX_RECONNECTS`` tries in a row. It stops after
``--limit`` events, or on Ctrl-C (exit 0, with the cursor to resume from).
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from service.cli.client import ApiClient
from service.cli.common import add_client_options, duration_text
from service.cli.output import cell, emit, emit_yaml, json_text
from service.cli.sse import Message, messages
from service.domain.timeutil import parse_duration, parse_instant

if TYPE_CHECKING:
    from service.cli.common import Subparsers

COLUMNS = ("at", "type", "sid", "position")
READ_TIMEOUT_S = 45.0
"""The server sends a heartbeat every 15 s: this long without a byte means the link is dead."""
RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
MAX_RECONNECTS = len(RECONNECT_DELAYS_S)
LAST_POSITION = "18446744073709551615"
"""The largest stream sequence number: ``<ms-1>-LAST`` is just before millisecond ms."""
SUMMARY_CHARS = 160
TAIL_DESCRIPTION = """\
Print events as they are appended, one a line (or a JSON line, or a YAML document),
flushed, so the output can feed a pipe. A dropped connection is resumed from the last
event seen, nothing missed and nothing twice. Stops after --limit events or on
Ctrl-C, printing the cursor to resume from on stderr."""
FIELD_FLAGS = {"Last-Event-ID": "--from", "after": "--after", "type": "--type"}


class StreamLost(Exception):
    """The connection to the event stream broke or went quiet."""


def add_parsers(sub: Subparsers) -> None:
    events = sub.add_parser("events", help="the event feed: a page, or followed as it grows")
    actions = events.add_subparsers(dest="action", required=True)
    tail = actions.add_parser(
        "tail", help="follow new events (Ctrl-C stops)", description=TAIL_DESCRIPTION
    )
    start = tail.add_mutually_exclusive_group()
    start.add_argument(
        "--from",
        dest="start",
        default="now",
        metavar="WHERE",
        help="now (default), start, an RFC 3339 instant, or a cursor (an event's position)",
    )
    start.add_argument(
        "--since", type=duration_text, metavar="DURATION", help="from this long ago, e.g. 10m"
    )
    tail.add_argument("--type", action="append", help="only this event type (repeatable)")
    tail.add_argument("--schedule", help="only events of this schedule (or other id)")
    tail.add_argument("--limit", type=int, metavar="N", help="stop after N events")
    listing = actions.add_parser("list", help="a page of the feed, oldest first")
    listing.add_argument("--after", help="cursor: the position of the last event seen")
    listing.add_argument("--limit", type=int)
    for action in actions.choices.values():
        add_client_options(action)
        action.set_defaults(func=run, field_flags=FIELD_FLAGS)


def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.action](ApiClient(args.url, namespace=args.namespace), args)


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    query = {"after": args.after, "limit": args.limit}
    page = client.request("GET", "/v1/events", query=query).body
    emit(page, args.output, COLUMNS)
    if args.output == "table" and page["items"]:
        print(f"more: --after {page['next']}", file=sys.stderr)
    return 0


def start_cursor(client: ApiClient, args: argparse.Namespace) -> str | None:
    """The cursor ``--from``/``--since`` name (None: the start of the log)."""
    where = args.start
    if args.since is not None:
        moment = int(time.time() * 1000) - parse_duration(args.since)
    elif where == "start":
        return None
    elif where == "now":
        moment = int(time.time() * 1000)
    else:
        try:
            moment = parse_instant(where)
        except ValueError:
            return str(where)  # a cursor: the API checks it
    partitions = len(
        client.request("GET", "/v1/events", query={"limit": 1}).body["next"].split(".")
    )
    return ".".join([f"{moment - 1}-{LAST_POSITION}"] * partitions)


def tail(client: ApiClient, args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be at least 1")
    cursor = start_cursor(client, args)
    shown = failures = 0
    try:
        while True:
            try:
                for message in _guarded(_open(client, args, cursor)):
                    cursor = message.id or cursor
                    if message.data is None:
                        continue
                    failures = 0
                    show(orjson.loads(message.data), args.output)
                    shown += 1
                    if args.limit is not None and shown >= args.limit:
                        return 0
            except StreamLost as exc:
                lost = str(exc)
            else:
                lost = "the server closed the stream"
            failures = _backoff(failures, lost)
    except KeyboardInterrupt:
        if cursor:
            print(f"\nresume: --from {cursor}", file=sys.stderr)
        return 0


def _backoff(failures: int, why: str) -> int:
    if failures >= MAX_RECONNECTS:
        raise ConnectionError(f"event stream lost {failures + 1} times in a row: {why}")
    print(f"cronstream: {why}; reconnecting", file=sys.stderr)
    time.sleep(RECONNECT_DELAYS_S[failures])
    return failures + 1


def _open(client: ApiClient, args: argparse.Namespace, cursor: str | None) -> Iterator[Message]:
    query = {"type": ",".join(args.type) if args.type else None, "schedule": args.schedule}
    headers = {"Last-Event-ID": cursor} if cursor else {}
    with client.stream(
        "/v1/events/stream", headers=headers, query=query, read_timeout_s=READ_TIMEOUT_S
    ) as body:
        yield from messages(body)


def _guarded(source: Iterator[Message]) -> Iterator[Message]:
    """Network failures while reading become StreamLost; what the caller does with a
    message (printing to a closed pipe, say) is not caught here."""
    try:
        yield from source
    except (OSError, http.client.HTTPException) as exc:
        raise StreamLost(str(exc) or type(exc).__name__) from exc


def show(event: dict[str, Any], fmt: str) -> None:
    """One event: a line (table), a JSON line, or a YAML document; flushed at once."""
    if fmt == "json":
        sys.stdout.write(json_text(event) + "\n")
    elif fmt == "yaml":
        sys.stdout.write("---\n")
        emit_yaml(event)
    else:
        sys.stdout.write(event_line(event) + "\n")
    sys.stdout.flush()


def event_line(event: dict[str, Any]) -> str:
    """``at  type  id  key=value …`` with the event's plain fields."""
    data = event.get("data") or {}
    pairs = [
        f"{key}={cell(value)}"
        for key, value in data.items()
        if value not in (None, "", [], False) and not isinstance(value, dict)
    ]
    summary = " ".join(pairs)
    if len(summary) > SUMMARY_CHARS:
        summary = summary[: SUMMARY_CHARS - 3] + "..."
    return f"{event.get('at')}  {event.get('type', ''):<18}  {event.get('sid')}  {summary}".rstrip()


ACTIONS: dict[str, Callable[[ApiClient, argparse.Namespace], int]] = {
    "list": _list,
    "tail": tail,
}
