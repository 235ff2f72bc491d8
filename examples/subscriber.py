"""A cronstream event subscriber: follows GET /v1/events/stream and resumes where it stopped.

Standard library only. Prints one line per event and keeps the last event id in a
state file, written after each event is handled, so a restarted subscriber
resumes exactly after the last event it handled (the server sends id-only
messages past filtered events, so the id moves even when nothing is printed)::

    python examples/subscriber.py --url http://127.0.0.1:8080 --state .subscriber-id \\
        --type ScheduleFired,RunFailed

It sends ``CRONSTREAM_TOKEN`` as a bearer token when set (a token with events:read);
a refused token stops it. Stop it with Ctrl-C. It reconnects after other errors,
waiting a little longer each time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

RETRY_DELAYS_S = (0.5, 1, 2, 5, 10)
READ_TIMEOUT_S = 60  # the server sends a heartbeat every 15 s


def messages(lines: Iterator[bytes]) -> Iterator[dict[str, str]]:
    """SSE messages (their id/event/data fields) from a stream of lines."""
    fields: dict[str, str] = {}
    for raw in lines:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if fields:
                yield fields
            fields = {}
        elif not line.startswith(":"):  # ':' starts a comment (heartbeat)
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def load_id(state: Path) -> str | None:
    try:
        return state.read_text().strip() or None
    except FileNotFoundError:
        return None


def save_id(state: Path, event_id: str) -> None:
    tmp = state.with_suffix(state.suffix + ".tmp")
    tmp.write_text(event_id + "\n")
    os.replace(tmp, state)  # atomic: a crash leaves the old id or the new one


def handle(message: dict[str, str]) -> None:
    """What this subscriber does with an event: print it. Replace with your own."""
    item = json.loads(message["data"])
    print(f"{item['at']}  {item['type']:<18} {item['sid']:<24} {json.dumps(item['data'])}")
    sys.stdout.flush()


def follow(args: argparse.Namespace) -> int:
    """Read the stream until ``--max-events`` events were handled (0: forever)."""
    handled = 0
    failures = 0
    query = {k: v for k, v in (("type", args.type), ("schedule", args.schedule)) if v}
    url = args.url.rstrip("/") + "/v1/events/stream"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    while True:
        headers = {"Accept": "text/event-stream"}
        last = load_id(args.state)
        if last:
            headers["Last-Event-ID"] = last
        if os.environ.get("CRONSTREAM_TOKEN"):
            headers["Authorization"] = f"Bearer {os.environ['CRONSTREAM_TOKEN']}"
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=READ_TIMEOUT_S) as response:
                failures = 0
                for message in messages(iter(response.readline, b"")):
                    if "data" in message:
                        handle(message)
                        handled += 1
                    if "id" in message:
                        save_id(args.state, message["id"])
                    if args.max_events and handled >= args.max_events:
                        return 0
        except (urllib.error.URLError, OSError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code in (401, 403):
                # the token is missing or refused: asking again will not help
                print(f"subscriber: {exc}: set CRONSTREAM_TOKEN (events:read)", file=sys.stderr)
                return 1
            delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
            failures += 1
            if args.max_events and failures > len(RETRY_DELAYS_S):
                print(f"subscriber: giving up: {exc}", file=sys.stderr)
                return 1
            print(f"subscriber: {exc}; reconnecting in {delay}s", file=sys.stderr)
            time.sleep(delay)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("CRONSTREAM_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--state", type=Path, default=Path(".subscriber-last-event-id"))
    parser.add_argument("--type", help="only these event types, comma-separated")
    parser.add_argument("--schedule", help="only events of this schedule")
    parser.add_argument("--max-events", type=int, default=0, help="stop after N events")
    args = parser.parse_args(argv)
    try:
        return follow(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
