"""The CLI on par with ``temporal schedule``, against a running service: flags for every
field, describe, readable history, page hints, table/json/yaml, clean errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
import yaml

from service.domain.timeutil import parse_instant
from tests.integration.cli.conftest import run
from tests.process import ROOT, env

pytestmark = pytest.mark.slow

EVERY_FLAG = [
    "--name", "Poller",
    "--description", "polls the queue",
    "--tag", "flags", "--tag", "eu",
    "--cron", "0 2 * * *",
    "--interval", "1h/15m",
    "--exclude-cron", "0 2 * 12 *",
    "--tz", "Europe/Berlin",
    "--jitter", "30s",
    "--start", "2026-01-01T00:00:00Z",
    "--end", "2099-01-01T00:00:00Z",
    "--overlap", "buffer_all",
    "--catchup", "all",
    "--catchup-window", "6h",
    "--catchup-max", "24",
    "--buffer-max", "5",
    "--pause-on-failure",
    "--max-actions", "100",
    "--input", '{"depth": 2}',
]  # fmt: skip


def get(capsys: pytest.CaptureFixture[str], url: str, sid: str) -> dict[str, Any]:
    code, out, err = run(capsys, "schedule", "get", sid, "-o", "json", "--url", url)
    assert code == 0, err
    body: dict[str, Any] = json.loads(out)
    return body


def test_every_field_from_flags_and_a_patch_of_only_the_given_ones(
    service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ("--url", service)
    assert run(capsys, "workflow", "put", "fw", "--none", *url)[0] == 0
    code, _, err = run(
        capsys, "schedule", "create", "--id", "flags", "--workflow", "fw", *EVERY_FLAG, *url
    )
    assert code == 0, err
    before = get(capsys, service, "flags")
    assert before["spec"]["intervals"] == [{"every": "1h", "offset": "15m"}]
    assert (before["spec"]["jitter"], before["spec"]["exclude_cron"]) == ("30s", ["0 2 * 12 *"])
    assert (before["spec"]["start_at"], before["spec"]["end_at"]) == (
        "2026-01-01T00:00:00Z",
        "2099-01-01T00:00:00Z",
    )
    assert before["policy"] == {
        "overlap": "buffer_all",
        "catchup": "all",
        "catchup_window": "6h",
        "catchup_max": 24,
        "buffer_max": 5,
        "pause_on_failure": True,
    }
    assert (before["max_actions"], before["input"], before["tags"]) == (
        100,
        {"depth": 2},
        ["eu", "flags"],
    )
    assert (before["name"], before["description"]) == ("Poller", "polls the queue")

    args = ("--overlap", "allow_all", "--no-pause-on-failure", "--unset", "spec.end_at")
    code, out, err = run(capsys, "schedule", "update", "flags", *args, "-o", "yaml", *url)
    assert code == 0, err
    after = yaml.safe_load(out)
    assert after["policy"] == before["policy"] | {"overlap": "allow_all", "pause_on_failure": False}
    assert after["spec"] == before["spec"] | {"end_at": None}
    for field in ("name", "description", "input", "max_actions", "tags", "workflow_id"):
        assert after[field] == before[field]


def test_describe_shows_spec_policy_state_next_and_recent_actions(
    service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ("--url", service)
    assert run(capsys, "workflow", "put", "dw", "--none", *url)[0] == 0
    code, _, err = run(
        capsys, "schedule", "create", "--id", "desc", "--workflow", "dw", "--interval", "1s",
        "--overlap", "allow_all", "--max-actions", "1000", *url,
    )  # fmt: skip
    assert code == 0, err
    assert run(capsys, "schedule", "trigger", "desc", *url)[0] == 0

    def described() -> dict[str, Any]:
        code, out, err = run(
            capsys, "schedule", "describe", "desc", "--next", "3", "-o", "json", *url
        )
        assert code == 0, err
        report: dict[str, Any] = json.loads(out)
        return report

    deadline = time.monotonic() + 20
    while True:
        report = described()
        recent = report["recent_actions"]
        fired = [r for r in recent if r["trigger"] == "schedule" and r["run_status"] == "succeeded"]
        counted = report["schedule"]["info"]["action_count"]  # the view may trail the log
        if len(fired) >= 2 and any(r["trigger"] == "manual" for r in recent) and counted >= 2:
            break
        assert time.monotonic() < deadline, recent
        time.sleep(0.2)
    assert all(r["outcome"] == "fired" and r["run_id"].startswith("run_") for r in fired)
    nominal = [parse_instant(r["nominal_time"]) for r in recent]
    assert nominal == sorted(nominal)  # as instants: "…18Z" comes before "…18.013Z"
    assert len(report["next_actions"]) == 3

    assert run(capsys, "schedule", "pause", "desc", "--note", "maintenance", *url)[0] == 0
    code, out, _ = run(capsys, "schedule", "describe", "desc", *url)
    assert code == 0
    lines = out.splitlines()
    assert 'State       paused: "maintenance"' in lines
    assert "Spec        Every second" in lines
    assert any(line.startswith("Policy      overlap allow_all; catch-up latest") for line in lines)
    assert any(line.startswith("Actions     ") and "left of 1000" in line for line in lines)
    assert any(line.startswith("Counters    missed (catch-up) 0") for line in lines)
    assert lines[lines.index("Next actions") + 1] == "  none (paused)"
    recent_header = lines[lines.index("Recent actions") + 1].split()
    assert recent_header == [
        "NOMINAL_TIME",
        "FIRED_AT",
        "TRIGGER",
        "OUTCOME",
        "RUN_ID",
        "RUN_STATUS",
        "DETAIL",
    ]
    assert "succeeded" in out and "manual" in out


def test_history_is_one_change_a_line_with_who_when_and_note(
    service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ("--url", service)
    assert run(capsys, "workflow", "put", "hw", "--none", *url)[0] == 0
    create = ("--id", "hist", "--workflow", "hw", "--cron", "0 2 * * *", "--note", "first")
    assert run(capsys, "schedule", "create", *create, *url)[0] == 0
    assert run(capsys, "schedule", "update", "hist", "--overlap", "allow_all", *url)[0] == 0
    assert run(capsys, "schedule", "pause", "hist", "--note", "freeze", *url)[0] == 0
    code, out, err = run(capsys, "schedule", "history", "hist", *url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["AT", "ACTOR", "TYPE", "CHANGE", "NOTE"]
    (changed,) = [line for line in lines if "ScheduleUpdated" in line]
    assert "policy.overlap: skip -> allow_all" in changed and "cli:" in changed
    (paused,) = [line for line in lines if "SchedulePaused" in line]
    assert "status: active -> paused" in paused and paused.rstrip().endswith("freeze")
    created = [line for line in lines if "ScheduleCreated" in line]
    assert any('spec.cron = ["0 2 * * *"]' in line for line in created)
    assert all(line.rstrip().endswith("first") for line in created)


def test_list_pages_hint_the_next_one_on_stderr(
    service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ("--url", service)
    assert run(capsys, "workflow", "put", "lw", "--none", *url)[0] == 0
    for sid in ("page-a", "page-b", "page-c"):
        create = ("--id", sid, "--workflow", "lw", "--cron", "@daily", "--tag", "page")
        assert run(capsys, "schedule", "create", *create, *url)[0] == 0
    code, out, err = run(capsys, "schedule", "list", "--tag", "page", "--limit", "2", *url)
    assert code == 0
    assert len(out.splitlines()) == 3 and "more" not in out
    assert err.startswith("more: --cursor ")
    cursor = err.split()[-1]
    code, out, err = run(capsys, "schedule", "list", "--tag", "page", "--cursor", cursor, *url)
    assert (code, err) == (0, "")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["page-c"]
    code, out, err = run(
        capsys, "schedule", "list", "--tag", "page", "--limit", "2", "-o", "json", *url
    )
    assert err == "" and json.loads(out)["next_cursor"] == cursor


def test_tables_show_human_values(service: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = ("--url", service)
    handler = "tests.integration.runs.handlers:noop"
    assert run(capsys, "workflow", "put", "hv", "--python", handler, *url)[0] == 0
    code, out, _ = run(capsys, "workflow", "run", "hv", "-o", "json", *url)
    run_id = json.loads(out)["run_id"]
    deadline = time.monotonic() + 20
    while True:  # the run's view follows the log: wait for it to have the finished run
        code, out, _ = run(capsys, "runs", "get", run_id, *url)
        if code == 0 and "succeeded" in out:
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.05)
    assert any(line.split() == ["CANCEL_REQUESTED", "no"] for line in out.splitlines())
    assert any(line.split() == ["INPUT", "-"] for line in out.splitlines())
    for python in ("False", "True", "None", "{}", "[]"):
        assert python not in out.split()
    code, out, _ = run(capsys, "workflow", "run", "hv", *url)  # RUN_ID  DUPLICATE
    assert code == 0 and out.splitlines()[1].split()[1] == "no"
    create = ("--id", "hvs", "--workflow", "hv", "--cron", "@daily")
    assert run(capsys, "schedule", "create", *create, *url)[0] == 0
    window = ("--from", "2099-01-01T00:00:00Z", "--to", "2099-01-01T00:00:00Z")
    code, out, _ = run(capsys, "schedule", "fires", "hvs", *window, *url)
    assert code == 0
    assert out.splitlines()[1].split() == ["2099-01-01T00:00:00Z", "scheduled", "-", "-"]


def test_errors_are_printed_once(service: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = ("--url", service)
    assert run(capsys, "workflow", "put", "ew", "--none", *url)[0] == 0
    code, _, err = run(
        capsys, "schedule", "create", "--workflow", "ew", "--cron", "61 * * * *", *url
    )
    assert code == 1
    assert err.count("61 is out of range") == 1
    assert "spec.cron.0 (--cron)" in err


def test_a_closed_pipe_ends_a_listing_quietly(service: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "service", "runs", "list", "--limit", "500"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env(CRONSTREAM_URL=service),
            timeout=30,
            check=False,
            cwd=ROOT,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr.decode()) == (0, "")
