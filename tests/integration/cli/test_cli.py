"""The CLI's API commands against a running service process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cli.conftest import run

pytestmark = pytest.mark.slow


def test_workflow_and_schedule_lifecycle(
    service: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = ("--url", service)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["depth"]}))
    code, out, _ = run(
        capsys,
        "workflow",
        "put",
        "scan",
        "--http",
        "http://127.0.0.1:9/hook",
        "--name",
        "Scan",
        "--input-schema",
        str(schema),
        *url,
    )
    assert code == 0 and "scan" in out and "http" in out  # table output
    code, out, _ = run(capsys, "workflow", "get", "scan", "-o", "json", *url)
    assert json.loads(out)["target"]["url"] == "http://127.0.0.1:9/hook"
    body = tmp_path / "wf.json"
    body.write_text(json.dumps({"target": {"type": "python", "handler": "jobs:run"}}))
    assert run(capsys, "workflow", "put", "py", "-f", str(body), *url)[0] == 0
    code, out, _ = run(capsys, "workflow", "list", "-o", "json", *url)
    assert [w["id"] for w in json.loads(out)["items"]] == ["py", "scan"]

    code, out, err = run(
        capsys,
        "schedule",
        "create",
        "--id",
        "nightly",
        "--workflow",
        "scan",
        "--cron",
        "0 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--tag",
        "prod",
        "--input",
        '{"depth": 1}',
        "--idempotency-key",
        "k1",
        "-o",
        "json",
        *url,
    )
    assert code == 0, err
    assert json.loads(out)["spec"]["cron"] == ["0 2 * * *"]
    code, out, _ = run(
        capsys,
        "schedule",
        "create",
        "--workflow",
        "scan",
        "--every",
        "15m",
        "--paused",
        "--note",
        "not yet",
        "--input",
        '{"depth": 2}',
        *url,
    )
    assert code == 0 and "paused" in out
    code, out, _ = run(capsys, "schedule", "list", "--tag", "prod", "-o", "json", *url)
    assert [s["id"] for s in json.loads(out)["items"]] == ["nightly"]
    code, out, _ = run(capsys, "schedule", "list", "--status", "paused", *url)
    assert "paused" in out and "nightly" not in out
    code, out, _ = run(
        capsys,
        "schedule",
        "update",
        "nightly",
        "--cron",
        "30 3 * * *",
        "--if-match",
        "1",
        "-o",
        "json",
        *url,
    )
    assert code == 0 and json.loads(out)["version"] == 2
    code, _, err = run(
        capsys, "schedule", "update", "nightly", "--name", "x", "--if-match", "1", *url
    )
    assert code == 1 and "412" in err
    assert run(capsys, "schedule", "pause", "nightly", "--note", "freeze", *url)[0] == 0
    code, out, _ = run(capsys, "schedule", "get", "nightly", "-o", "json", *url)
    assert json.loads(out)["status"] == "paused" and json.loads(out)["note"] == "freeze"
    assert run(capsys, "schedule", "resume", "nightly", *url)[0] == 0
    code, out, _ = run(capsys, "schedule", "history", "nightly", *url)
    assert code == 0
    for kind in ("ScheduleCreated", "ScheduleUpdated", "SchedulePaused", "ScheduleResumed"):
        assert kind in out
    assert "cli:" in out  # the actor is the CLI user
    code, out, err = run(
        capsys, "schedule", "trigger", "nightly", "--input", '{"depth": 3}', "-o", "json", *url
    )
    assert code == 0 and json.loads(out)["fired"] == 1, err
    code, out, err = run(
        capsys,
        "schedule",
        "backfill",
        "nightly",
        "--start",
        "2026-01-01T00:00:00Z",
        "--end",
        "2026-01-03T23:59:59Z",
        "--overlap",
        "allow_all",
        *url,
    )
    assert code == 0 and "3" in out, err
    code, out, err = run(
        capsys,
        "schedule",
        "fires",
        "nightly",
        "--from",
        "2026-01-01T00:00:00Z",
        "--to",
        "2026-01-02T23:59:59Z",
        "-o",
        "json",
        *url,
    )
    assert code == 0, err
    # before the schedule existed: only the backfilled times, with their runs
    items = json.loads(out)["items"]
    assert [i["outcome"] for i in items] == ["backfilled", "backfilled"]
    assert all(i["detail"]["backfill"]["run_id"].startswith("run_") for i in items)
    assert run(capsys, "schedule", "delete", "nightly", *url)[0] == 0
    code, _, err = run(capsys, "schedule", "get", "nightly", *url)
    assert code == 1 and "404" in err


def test_runs_commands(service: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = ("--url", service)
    handler = "tests.integration.runs.handlers:noop"
    assert run(capsys, "workflow", "put", "noop", "--python", handler, *url)[0] == 0
    code, out, err = run(
        capsys, "workflow", "run", "noop", "--input", '{"a": 1}', "-o", "json", *url
    )
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    # the service runs a worker: wait for the run to finish, reading it through the CLI
    import time

    deadline = time.monotonic() + 20
    while True:
        code, out, _ = run(capsys, "runs", "get", run_id, "-o", "json", *url)
        if code == 0 and json.loads(out)["status"] == "succeeded":
            break
        assert time.monotonic() < deadline, out
        time.sleep(0.05)
    body = json.loads(out)
    assert body["trigger"]["type"] == "manual" and body["input"] == {"a": 1}
    code, out, _ = run(capsys, "runs", "get", run_id, *url)  # run and attempts as tables
    assert code == 0 and "ATTEMPT" in out and "succeeded" in out
    code, out, _ = run(capsys, "runs", "list", "--workflow", "noop", *url)
    assert code == 0 and run_id in out
    code, _, err = run(capsys, "runs", "cancel", run_id, *url)
    assert code == 1 and "409" in err  # already finished
    code, _, err = run(capsys, "runs", "retry", "run_missing", *url)
    assert code == 1 and "404" in err


def test_errors_are_printed_with_the_field(
    service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "workflow", "put", "w", "--none", "--url", service)
    code, _, err = run(
        capsys, "schedule", "create", "--workflow", "w", "--cron", "61 * * * *", "--url", service
    )
    assert code == 1
    assert "spec.cron.0" in err and "minute" in err
    code, _, err = run(capsys, "schedule", "list", "--url", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach" in err
