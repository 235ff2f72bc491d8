"""``workflow put`` flags build the whole HTTP target, so no JSON file is needed."""

from __future__ import annotations

import pytest

from service.cli.main import build_parser
from service.cli.workflow_cmd import put_body


def test_every_http_target_field_has_a_flag() -> None:
    args = build_parser().parse_args(
        [
            "workflow", "put", "hook", "--http", "http://127.0.0.1:9000/hook",
            "--method", "PUT", "--secret-env", "HOOK_SECRET", "--body", "envelope",
            "--header", "X-Team=billing", "--header", "X-Env=prod",
            "--timeout", "30s", "--max-attempts", "5",
        ]
    )  # fmt: skip
    assert put_body(args) == {
        "target": {
            "type": "http",
            "url": "http://127.0.0.1:9000/hook",
            "method": "PUT",
            "secret_env": "HOOK_SECRET",
            "body": "envelope",
            "headers": {"X-Team": "billing", "X-Env": "prod"},
        },
        "timeout": "30s",
        "retry": {"max_attempts": 5},
    }


def test_stored_signing_has_a_flag() -> None:
    args = build_parser().parse_args(
        ["workflow", "put", "hook", "--http", "https://example.test/hook", "--signing", "stored"]
    )
    assert put_body(args)["target"]["signing"] == "stored"


def test_a_header_without_a_value_separator_names_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["workflow", "put", "w", "--http", "u", "--header", "X-Team"])
    assert exited.value.code == 2
    assert "argument --header: expected NAME=VALUE" in capsys.readouterr().err
