"""``cronstream apply``: the plan it prints, per resource and per file, and its refusals."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from service.cli.main import main

FILE = """\
workflows:
  - id: wf1
    target: {type: none}
schedules:
  - id: s1
    workflow_id: wf1
    spec: {cron: ["0 2 * * *"]}
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def env(redis: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # ``redis`` empties the server first; the CLI uses the default key prefix
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.delenv("CRONSTREAM_KEY_PREFIX", raising=False)


@pytest.mark.usefixtures("env")
def test_the_plan_is_printed_per_resource_and_per_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "jobs.yaml").write_text(FILE)
    code, out, err = run(capsys, "apply", str(tmp_path), "--dry-run")
    assert (code, err) == (0, "")
    assert out == (
        "+ workflow wf1  (jobs.yaml)\n"
        "+ schedule s1  (jobs.yaml)\n"
        "\n"
        "jobs.yaml: 2 to create\n"
        "Plan: 2 to create (dry run: nothing applied)\n"
    )
    code, out, _ = run(capsys, "apply", str(tmp_path))
    assert code == 0 and out.endswith("Applied: 2 created; 2 events appended\n")
    (tmp_path / "jobs.yaml").write_text(FILE.replace("0 2 * * *", "30 2 * * *"))
    code, out, _ = run(capsys, "apply", str(tmp_path / "jobs.yaml"), "--dry-run")
    assert code == 0
    assert out == (
        "~ schedule s1  (jobs.yaml)\n"
        '    spec.cron: ["0 2 * * *"] -> ["30 2 * * *"]\n'
        "\n"
        "jobs.yaml: 1 to update, 1 unchanged\n"
        "Plan: 1 to update, 1 unchanged (dry run: nothing applied)\n"
    )
    code, out, _ = run(capsys, "apply", str(tmp_path), "-o", "json")
    document = orjson.loads(out)
    assert document["appended"] == 1 and document["files"] == {
        "jobs.yaml": {"update": 1, "unchanged": 1}
    }
    [change] = document["changes"]
    assert change["diff"] == [{"field": "spec.cron", "live": ["0 2 * * *"], "file": ["30 2 * * *"]}]
    code, out, _ = run(capsys, "apply", str(tmp_path))
    assert code == 0 and out == "jobs.yaml: 2 unchanged\nApplied: no changes; 0 events appended\n"


@pytest.mark.usefixtures("env")
def test_an_invalid_file_is_refused_with_every_error_and_nothing_applied(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, redis_url: str
) -> None:
    (tmp_path / "good.yaml").write_text(FILE)
    (tmp_path / "bad.yaml").write_text(
        "schedules:\n  - id: s2\n    workflow_id: wf1\n    spec: {cron: ['0 2 * * *']}\n"
        "    policy: {overlap: never}\n    max_actions: 0\n"
    )
    code, out, err = run(capsys, "apply", str(tmp_path))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "cronstream: bad.yaml:5:23: policy.overlap: Input should be 'skip', 'buffer_one', "
        "'buffer_all', 'cancel_other', 'terminate_other' or 'allow_all'",
        "cronstream: bad.yaml:6:18: max_actions: Input should be greater than or equal to 1",
        "cronstream: nothing was applied",
    ]
    code, out, _ = run(capsys, "apply", str(tmp_path / "good.yaml"), "--dry-run")
    assert code == 0 and "Plan: 2 to create" in out  # nothing was written
