"""The CLI names its namespace with --namespace or $CRONSTREAM_NAMESPACE."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tests.integration.cli.conftest import run


def test_the_flag_and_the_variable_send_the_namespace_header(
    service: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # only default holds resources: naming another namespace is refused, saying which
    code, _, err = run(capsys, "schedule", "list", "--url", service, "--namespace", "team-a")
    assert code == 1 and "namespace team-a" in err, err
    code, _, err = run(capsys, "schedule", "list", "--url", service, "--namespace", "default")
    assert code == 0, err
    monkeypatch.setenv("CRONSTREAM_NAMESPACE", "team-b")
    code, _, err = run(capsys, "runs", "list", "--url", service)
    assert code == 1 and "namespace team-b" in err, err
    code, _, err = run(capsys, "runs", "list", "--url", service, "--namespace", "default")
    assert code == 0, err


def test_namespace_set_and_show_keep_a_quota_in_redis(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CRONSTREAM_KEY_PREFIX", f"ns{uuid.uuid4().hex[:8]}")
    code, out, err = run(
        capsys, "namespace", "set", "team-a", "--max-schedules", "5", "--min-interval", "1m",
        "--max-catchup", "10", "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    expected = {"namespace": "team-a", "max_schedules": 5, "min_interval": "1m", "max_catchup": 10}
    assert orjson.loads(out) == [expected]
    code, out, err = run(capsys, "namespace", "set", "team-a", "--max-schedules", "none")
    assert code == 0, err
    code, out, _ = run(capsys, "namespace", "show", "-o", "json")
    assert orjson.loads(out) == [{**expected, "max_schedules": None}]
    code, out, _ = run(capsys, "namespace", "show", "default", "-o", "json")
    assert orjson.loads(out) == [
        {"namespace": "default", "max_schedules": None, "min_interval": None, "max_catchup": None}
    ]
    with pytest.raises(SystemExit):
        run(capsys, "namespace", "set", "team-a", "--max-schedules", "0")
