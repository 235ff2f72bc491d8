"""The command itself: version, help, errors printed once, clean piping."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from service.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[3]


def test_version_comes_from_the_package(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"cronstream {metadata.version('cronstream')}\n"


def test_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out and "CRONSTREAM_URL" in out
    for command in ("schedule", "events", "spec", "runs"):
        assert command in out


def test_every_subcommand_help_is_plain_text() -> None:
    def walk(parser: object) -> list[str]:
        import argparse

        assert isinstance(parser, argparse.ArgumentParser)
        texts = [parser.format_help()]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    texts += walk(child)
        return texts

    texts = walk(build_parser())
    assert len(texts) > 30
    assert not [t for t in texts if "``" in t]


@pytest.mark.parametrize(
    "argv",
    [
        ["schedule", "create", "--workflow", "w", "--cron", "* * * * *", "--input", "{bad"],
        ["schedule", "update", "s", "--input", "{bad"],
        ["schedule", "trigger", "s", "--input", "{bad"],
        ["workflow", "run", "w", "--input", "{bad"],
    ],
)
def test_bad_json_names_the_flag(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--url", "http://127.0.0.1:9"])
    assert exit_.value.code == 2
    assert "argument --input: invalid JSON" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["schedule", "create", "--workflow", "w", "--jitter", "soon"], "--jitter"),
        (["schedule", "create", "--workflow", "w", "--start", "yesterday"], "--start"),
        (["schedule", "create", "--workflow", "w", "--interval", "15x"], "--interval"),
        (["schedule", "create", "--workflow", "w", "--overlap", "sometimes"], "--overlap"),
        (["schedule", "update", "s", "--catchup-window", "long"], "--catchup-window"),
        (["schedule", "update", "s", "--unset", "status"], "--unset"),
    ],
)
def test_bad_flag_values_are_named_before_any_request(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--url", "http://127.0.0.1:9"])
    assert exit_.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def _closed_pipe_run(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI with stdout a pipe nobody reads any more (as `| head -1` leaves it)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "service", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=30,
            check=False,
            cwd=ROOT,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("count", ["1", "1000"])
def test_a_closed_pipe_ends_the_command_quietly(count: str) -> None:
    # 1 time stays in the buffer until exit; 1000 fill it while printing
    result = _closed_pipe_run("spec", "next", "* * * * *", "--count", count)
    assert (result.returncode, result.stderr.decode()) == (0, "")
