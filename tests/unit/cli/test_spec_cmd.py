"""``cronstream spec next``: offline fire times, through the parser the command registers."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service.cli.spec_cmd import add_parser
from service.domain.spec import Spec, preview
from service.domain.timeutil import parse_instant

ROOT = Path(__file__).resolve().parents[3]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="cronstream")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_one_utc_instant_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["spec", "next", "0 2 * * *", "--tz", "Europe/Berlin", "--after", "2024-03-30T00:00:00Z"]
    code, out, err = run([*argv, "--count", "3"], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "2024-03-30T01:00:00Z",
        "2024-03-31T01:00:00Z",
        "2024-04-01T00:00:00Z",
    ]


def test_several_expressions_are_merged(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "spec",
        "next",
        "0 * * * *",
        "30 * * * *",
        "--after",
        "2024-01-01T00:00:00Z",
        "--count",
        "3",
    ]
    code, out, _ = run(argv, capsys)
    assert code == 0
    assert out.splitlines() == [
        "2024-01-01T00:30:00Z",
        "2024-01-01T01:00:00Z",
        "2024-01-01T01:30:00Z",
    ]


def test_json_matches_the_preview(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "spec",
        "next",
        "*/20 * * * *",
        "--exclude",
        "0 * * * *",
        "--after",
        "2024-01-01T00:00:00Z",
        "--count",
        "3",
        "--jitter",
        "5m",
        "--schedule-id",
        "nightly",
        "--json",
    ]
    code, out, _ = run(argv, capsys)
    assert code == 0
    spec = Spec(cron=["*/20 * * * *"], exclude_cron=["0 * * * *"], jitter="5m")
    expected = preview(spec, parse_instant("2024-01-01T00:00:00Z"), 3, "nightly")
    assert json.loads(out) == expected.model_dump(mode="json")
    assert [t["nominal"] for t in json.loads(out)["times"]] == [
        "2024-01-01T00:20:00Z",
        "2024-01-01T00:40:00Z",
        "2024-01-01T01:20:00Z",
    ]
    assert json.loads(out)["excluded"] == [
        {"nominal": "2024-01-01T01:00:00Z", "reason": "exclude_cron[0]: 0 * * * *"}
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["61 * * * *"], "'61 * * * *': minute field: 61 is out of range 0-59"),
        (["0 0 30 2 *"], "'0 0 30 2 *': can never fire"),
        (["@daily", "--tz", "Mars/Olympus"], "--tz: unknown time zone 'Mars/Olympus'"),
        (["@daily", "--after", "yesterday"], "--after: invalid RFC 3339 instant 'yesterday'"),
        (["@daily", "--count", "0"], "--count must be between 1 and 1000"),
        (["@daily", "--exclude", "0 0 * * 9"], "--exclude '0 0 * * 9': day-of-week field: 9"),
    ],
)
def test_errors_exit_2_on_stderr(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["spec", "next", *argv], capsys)
    assert (code, out) == (2, "")
    assert message in err


def test_after_defaults_to_now(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["spec", "next", "* * * * *", "--count", "2"], capsys)
    assert code == 0
    first, second = (parse_instant(line) for line in out.splitlines())
    assert second - first == 60_000


def test_runs_without_a_server_in_a_fresh_process() -> None:
    script = (
        "import argparse, sys\n"
        "from service.cli.spec_cmd import add_parser\n"
        "p = argparse.ArgumentParser()\n"
        "add_parser(p.add_subparsers(dest='command', required=True))\n"
        "a = p.parse_args(sys.argv[1:])\n"
        "sys.exit(a.func(a))\n"
    )
    args = ["30 2 * * *", "--tz", "America/New_York", "--after", "2024-03-09T12:00:00Z"]
    ok = subprocess.run(
        [sys.executable, "-c", script, "spec", "next", *args, "--count", "2"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
    )
    assert (ok.returncode, ok.stdout) == (0, "2024-03-10T07:00:00Z\n2024-03-11T06:30:00Z\n")
    bad = subprocess.run(
        [sys.executable, "-c", script, "spec", "next", "* * *"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
    )
    assert bad.returncode == 2
    assert "expected 5 fields" in bad.stderr


def test_intervals_are_accepted_beside_cron(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["spec", "next", "15m", "--after", "2024-01-01T00:07:00Z", "--count", "3"]
    code, out, err = run(argv, capsys)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "2024-01-01T00:15:00Z",
        "2024-01-01T00:30:00Z",
        "2024-01-01T00:45:00Z",
    ]
    argv = ["spec", "next", "1h/15m", "0 0 * * *", "--after", "2023-12-31T23:30:00Z"]
    code, out, _ = run([*argv, "--count", "3"], capsys)
    assert out.splitlines() == [
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:15:00Z",
        "2024-01-01T01:15:00Z",
    ]


def test_jitter_shows_the_actual_time_beside_the_nominal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["spec", "next", "15m", "--jitter", "5m", "--schedule-id", "poller"]
    code, out, err = run([*argv, "--after", "2024-01-01T00:00:00Z", "--count", "4"], capsys)
    assert (code, err) == (0, "")
    spec = Spec.model_validate({"intervals": [{"every": "15m"}], "jitter": "5m"})
    expected = preview(spec, parse_instant("2024-01-01T00:00:00Z"), 4, "poller")
    lines = [line.split("  ") for line in out.splitlines()]
    assert [[parse_instant(n), parse_instant(a)] for n, a in lines] == [
        [t.nominal, t.actual] for t in expected.times
    ]
    assert any(t.actual != t.nominal for t in expected.times)
    code, out, err = run(["spec", "next", "15m", "--jitter", "5m", "--count", "1"], capsys)
    assert code == 0 and len(out.split()) == 1 and "--schedule-id" in err


def test_bounds_and_yaml_output(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["spec", "next", "@daily", "--after", "2024-01-01T00:00:00Z", "--output", "yaml"]
    code, out, _ = run(
        [*argv, "--start", "2024-01-05T00:00:00Z", "--end", "2024-01-06T12:00:00Z"], capsys
    )
    assert code == 0
    assert yaml.safe_load(out) == {
        "times": [
            {"nominal": "2024-01-05T00:00:00Z", "actual": "2024-01-05T00:00:00Z"},
            {"nominal": "2024-01-06T00:00:00Z", "actual": "2024-01-06T00:00:00Z"},
        ],
        "excluded": [],
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["500ms"], "'500ms': every must be at least 1s"),
        (["1h/2h"], "'1h/2h': offset must be smaller than every"),
        (["@daily", "--start", "soon"], "--start: invalid RFC 3339 instant 'soon'"),
        (
            ["@daily", "--start", "2024-02-01T00:00:00Z", "--end", "2024-01-01T00:00:00Z"],
            "--end: end_at must be after start_at",
        ),
    ],
)
def test_interval_and_bound_errors_name_what_was_typed(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["spec", "next", *argv], capsys)
    assert (code, out) == (2, "")
    assert message in err
