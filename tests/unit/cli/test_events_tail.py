"""``events tail`` against a fake API client (the seam ``ApiClient.stream``): resuming
after a dropped connection, stopping after --limit, giving up after bounded retries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import pytest

from service.cli import events_cmd
from service.cli.client import Reply
from service.cli.main import build_parser


def frame(position: str, kind: str = "ScheduleFired") -> list[bytes]:
    event = {"position": position, "type": kind, "sid": "s", "at": "2026-01-01T00:00:00Z"}
    return [f"id: {position}\n".encode(), f"data: {json.dumps(event)}\n".encode(), b"\n"]


class Dropped(IO[bytes]):
    """A body that yields some lines, then fails the way a dead socket does."""

    def __init__(self, lines: list[bytes], error: OSError | None) -> None:
        self.lines, self.error = lines, error

    def __iter__(self) -> Iterator[bytes]:
        yield from self.lines
        if self.error is not None:
            raise self.error


class FakeApi:
    def __init__(self, bodies: list[tuple[list[bytes], OSError | None]]) -> None:
        self.bodies = bodies
        self.resumed_from: list[str | None] = []

    def request(self, method: str, path: str, body: Any = None, **_: Any) -> Reply:
        assert (method, path) == ("GET", "/v1/events")
        return Reply(200, {"items": [], "next": "0-0"}, {})

    @contextmanager
    def stream(self, path: str, *, headers: dict[str, str], **_: Any) -> Iterator[Dropped]:
        assert path == "/v1/events/stream"
        self.resumed_from.append(headers.get("Last-Event-ID"))
        if not self.bodies:
            raise ConnectionRefusedError("connection refused")
        yield Dropped(*self.bodies.pop(0))


def tail(api: FakeApi, *argv: str) -> int:
    args = build_parser().parse_args(["events", "tail", "-o", "json", *argv])
    return events_cmd.tail(api, args)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_cmd, "RECONNECT_DELAYS_S", (0.0,) * events_cmd.MAX_RECONNECTS)


def test_a_dropped_stream_resumes_after_the_last_event(
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = FakeApi(
        [
            (frame("1-0") + frame("2-0"), TimeoutError("timed out")),
            ([b"id: 3-0\n", b"\n"], ConnectionResetError("reset")),  # filtered events skipped
            (frame("4-0") + frame("5-0"), None),
        ]
    )
    assert tail(api, "--from", "start", "--limit", "3") == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["position"] for line in out.splitlines()] == ["1-0", "2-0", "4-0"]
    assert api.resumed_from == [None, "2-0", "3-0"]
    assert err.count("reconnecting") == 2


def test_reconnects_are_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi([(frame("1-0"), TimeoutError("timed out"))])
    with pytest.raises(ConnectionError, match="lost 6 times in a row"):
        tail(api, "--from", "start")
    assert api.resumed_from == [None] + ["1-0"] * events_cmd.MAX_RECONNECTS
    assert capsys.readouterr().out.count("\n") == 1


def test_from_now_starts_after_the_present(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi([(frame("9-0"), None)])
    assert tail(api, "--limit", "1") == 0
    start = api.resumed_from[0]
    assert start is not None and start.endswith("-" + events_cmd.LAST_POSITION)
    assert int(start.split("-")[0]) > 1_700_000_000_000


def test_a_closed_stdout_is_not_taken_for_a_dropped_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: Any) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(events_cmd, "show", broken)
    api = FakeApi([(frame("1-0"), None)])
    with pytest.raises(BrokenPipeError):
        tail(api, "--from", "start")
    assert api.resumed_from == [None]
