"""Reading a Server-Sent Events body (the WHATWG rules the API's stream follows).

A message is its ``id:``, ``event:`` and ``data:`` lines up to a blank line. A
message with an id and no data moves the reader's last event id without an event
(the API sends one after events a filter dropped); comment lines (``:``) are
heartbeats.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    id: str | None
    event: str | None
    data: str | None
    """None for a message that only moves the last event id."""


def messages(lines: Iterable[bytes]) -> Iterator[Message]:
    """The messages of an event-stream body, read line by line as they come."""
    last_id: str | None = None
    event: str | None = None
    data: list[str] = []
    seen_id = False
    for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data or seen_id:
                yield Message(last_id, event, "\n".join(data) if data else None)
            event, data, seen_id = None, [], False
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id" and "\0" not in value:
            last_id, seen_id = value, True
        elif name == "event":
            event = value
        elif name == "data":
            data.append(value)
