"""``cronstream events tail`` follows the API's SSE feed of a running service."""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.integration.cli.conftest import run
from tests.process import ROOT, env

pytestmark = pytest.mark.slow


@contextmanager
def tail(url: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "events", "tail", "-o", "json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(CRONSTREAM_URL=url),
        cwd=ROOT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()


def read_line(process: subprocess.Popen[bytes], timeout_s: float = 20) -> bytes:
    """One line of the process's output, waiting at most ``timeout_s``."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout_s), "no event printed in time"
    return process.stdout.readline()


def test_tail_from_the_start_with_filters_and_a_limit(
    service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ("--url", service)
    assert run(capsys, "workflow", "put", "tw", "--none", *url)[0] == 0
    create = ("--id", "tailed", "--workflow", "tw", "--cron", "@daily")
    assert run(capsys, "schedule", "create", *create, *url)[0] == 0
    assert run(capsys, "schedule", "pause", "tailed", "--note", "n", *url)[0] == 0
    assert run(capsys, "schedule", "resume", "tailed", *url)[0] == 0
    args = ("--from", "start", "--schedule", "tailed", "--limit", "2", "-o", "json")
    code, out, err = run(capsys, "events", "tail", *args, *url)
    assert (code, err) == (0, "")
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in events] == ["ScheduleCreated", "SchedulePaused"]
    assert {e["sid"] for e in events} == {"tailed"}
    # resume after the second event, with only the types asked for
    resume = ("--from", events[1]["position"], "--schedule", "tailed", "--type", "ScheduleResumed")
    code, out, _ = run(capsys, "events", "tail", *resume, "--limit", "1", *url)
    assert code == 0
    assert out.split()[1:3] == ["ScheduleResumed", "tailed"]  # the table line: at, type, id


def test_tail_follows_new_events_and_stops_on_ctrl_c(
    service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ("--url", service)
    assert run(capsys, "workflow", "put", "fw2", "--none", *url)[0] == 0
    create = ("--id", "followed", "--workflow", "fw2", "--cron", "@daily")
    assert run(capsys, "schedule", "create", *create, *url)[0] == 0
    with tail(service, "--from", "start", "--schedule", "followed", "--limit", "2") as limited:
        assert json.loads(read_line(limited))["type"] == "ScheduleCreated"
        # the tail is now reading the stream: this event reaches it live
        assert run(capsys, "schedule", "pause", "followed", *url)[0] == 0
        assert json.loads(read_line(limited))["type"] == "SchedulePaused"
        assert limited.wait(timeout=20) == 0

    with tail(service, "--from", "start", "--schedule", "followed") as endless:
        assert json.loads(read_line(endless))["type"] == "ScheduleCreated"
        endless.send_signal(signal.SIGINT)
        assert endless.wait(timeout=20) == 0
        assert endless.stderr is not None
        err = endless.stderr.read().decode()
        assert "resume: --from " in err and "Traceback" not in err


def test_events_list_hints_the_next_page(service: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "events", "list", "--limit", "1", "--url", service)
    assert code == 0 and len(out.splitlines()) == 2
    assert err.startswith("more: --after ")
    after = err.split()[-1]
    code, out, _ = run(
        capsys, "events", "list", "--after", after, "--limit", "1", "-o", "json", "--url", service
    )
    assert code == 0 and json.loads(out)["items"][0]["position"] != after


def test_a_bad_cursor_names_the_flag(service: str, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, _, err = run(capsys, "events", "tail", "--from", "nonsense", "--url", service)
    assert code == 1 and "(--from)" in err and time.monotonic() - started < 10
