"""``cronstream notify``'s request bodies: flags to channels and rules, secrets read from
the environment only."""

from __future__ import annotations

import pytest

from service.cli.main import build_parser
from service.cli.notify import channel_body, rule_body


def parse(*argv: str) -> object:
    return build_parser().parse_args(["notify", *argv])


def test_an_email_channel_takes_its_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMTP_PW", "pw-from-env")
    args = parse(
        "channel", "put", "oncall", "--email", "--host", "smtp.example.com", "--port", "587",
        "--starttls", "--username", "cs", "--password-env", "SMTP_PW",
        "--from", "cs@example.com", "--to", "a@example.com", "--to", "b@example.com",
        "--rate", "5",
    )  # fmt: skip
    body = channel_body(args)  # type: ignore[arg-type]
    assert body["target"] == {
        "type": "email",
        "host": "smtp.example.com",
        "port": 587,
        "from": "cs@example.com",
        "to": ["a@example.com", "b@example.com"],
        "starttls": True,
        "username": "cs",
        "password": "pw-from-env",
    }
    assert body["rate_per_minute"] == 5 and "timeout_s" not in body


def test_a_secret_variable_that_is_not_set_stops_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    args = parse("channel", "put", "team", "--slack", "--url-env", "NO_SUCH_VAR")
    with pytest.raises(SystemExit, match="NO_SUCH_VAR is not set"):
        channel_body(args)  # type: ignore[arg-type]


def test_a_rule_from_flags() -> None:
    args = parse(
        "rule", "put", "busy", "--on", "overlap_skipped", "--channel", "team",
        "--channel", "ops", "--schedule", "nightly", "--threshold", "5", "--window", "600",
    )  # fmt: skip
    assert rule_body(args) == {  # type: ignore[arg-type]
        "on": "overlap_skipped",
        "channels": ["team", "ops"],
        "enabled": True,
        "schedule_id": "nightly",
        "threshold": 5,
        "window_s": 600,
    }
    with pytest.raises(SystemExit):
        parse("rule", "put", "r", "--on", "run_exploded", "--channel", "x")
