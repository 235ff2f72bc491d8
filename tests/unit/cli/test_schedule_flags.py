"""``schedule create`` and ``update`` flags: one per schedule field, sent as the API reads them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from service.api.models import ScheduleCreate
from service.cli.main import build_parser
from service.cli.schedule_flags import schedule_body
from service.cli.spec_options import looks_like_interval, parse_interval
from service.domain.schedule import SchedulePolicy
from service.domain.spec import Spec

EVERY_FLAG = [
    "--workflow", "scan",
    "--name", "Nightly",
    "--description", "scan at night",
    "--tag", "prod", "--tag", "eu",
    "--cron", "0 2 * * *", "--cron", "30 14 * * 1-5",
    "--interval", "15m", "--every", "1h/15m",
    "--exclude-cron", "0 2 * 12 *",
    "--tz", "Europe/Berlin",
    "--jitter", "30s",
    "--start", "2026-01-01T00:00:00Z",
    "--end", "2027-01-01T00:00:00Z",
    "--overlap", "buffer_all",
    "--catchup", "all",
    "--catchup-window", "6h",
    "--catchup-max", "24",
    "--buffer-max", "5",
    "--pause-on-failure",
    "--max-actions", "100",
    "--input", '{"depth": 2}',
]  # fmt: skip


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_create_flags_cover_every_field_of_a_schedule() -> None:
    body = schedule_body(parse("schedule", "create", *EVERY_FLAG))
    created = ScheduleCreate.model_validate(body)  # the API's own body model accepts it
    assert created.spec == Spec.model_validate(
        {
            "cron": ["0 2 * * *", "30 14 * * 1-5"],
            "intervals": [{"every": "15m"}, {"every": "1h", "offset": "15m"}],
            "exclude_cron": ["0 2 * 12 *"],
            "timezone": "Europe/Berlin",
            "jitter": "30s",
            "start_at": "2026-01-01T00:00:00Z",
            "end_at": "2027-01-01T00:00:00Z",
        }
    )
    assert created.policy == SchedulePolicy.model_validate(
        {
            "overlap": "buffer_all",
            "catchup": "all",
            "catchup_window": "6h",
            "catchup_max": 24,
            "buffer_max": 5,
            "pause_on_failure": True,
        }
    )
    assert (created.name, created.description, created.workflow_id) == (
        "Nightly",
        "scan at night",
        "scan",
    )
    assert (created.tags, created.max_actions, created.input) == (["eu", "prod"], 100, {"depth": 2})
    # every field of the schedule's models is set from a flag, none left at its default
    unset = [f for f in ("name", "description", "input", "max_actions", "tags") if f not in body]
    assert unset == []
    assert set(body["spec"]) == set(Spec.model_fields)
    assert set(body["policy"]) == set(SchedulePolicy.model_fields)


def test_update_sends_only_the_flags_given() -> None:
    args = parse("schedule", "update", "s", "--overlap", "allow_all", "--no-pause-on-failure")
    assert schedule_body(args) == {"policy": {"overlap": "allow_all", "pause_on_failure": False}}
    args = parse("schedule", "update", "s", "--jitter", "5s", "--unset", "spec.end_at")
    assert schedule_body(args) == {"spec": {"jitter": "5s", "end_at": None}}
    args = parse("schedule", "update", "s", "--unset", "max_actions", "--input", "null")
    assert schedule_body(args) == {"max_actions": None, "input": None}


def test_flags_are_set_over_a_file(tmp_path: Path) -> None:
    base: dict[str, Any] = {"workflow_id": "w", "spec": {"cron": ["@daily"], "timezone": "UTC"}}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(base))
    args = parse("schedule", "create", "-f", str(path), "--tz", "Asia/Tokyo", "--catchup", "none")
    assert schedule_body(args) == {
        "workflow_id": "w",
        "spec": {"cron": ["@daily"], "timezone": "Asia/Tokyo"},
        "policy": {"catchup": "none"},
    }


def test_input_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text('{"rows": [1, 2]}')
    args = parse(
        "schedule", "create", "--workflow", "w", "--cron", "@daily", "--input-file", str(path)
    )
    assert schedule_body(args)["input"] == {"rows": [1, 2]}
    path.write_text("{bad")
    with pytest.raises(ValueError, match=r"input\.json: invalid JSON"):
        schedule_body(args)


@pytest.mark.parametrize(
    ("text", "interval"),
    [
        ("15m", {"every": "15m"}),
        ("1h/15m", {"every": "1h", "offset": "15m"}),
        ("PT30S", {"every": "PT30S"}),
    ],
)
def test_intervals(text: str, interval: dict[str, str]) -> None:
    assert parse_interval(text) == interval
    assert looks_like_interval(text)


@pytest.mark.parametrize("text", ["0 2 * * *", "@daily", "*/5 * * * *", "15x", ""])
def test_cron_is_not_an_interval(text: str) -> None:
    assert not looks_like_interval(text)
