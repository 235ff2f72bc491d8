"""The CLI names its namespace with --namespace or $CRONSTREAM_NAMESPACE."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tests.integration.cli.conftest import run


def test_the_flag_and_the_variable_send_the_namespace_header(
    service: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = ("--url", service)
    put = ("workflow", "put", "ns-only", "--none", "--namespace", "team-a")
    code, _, err = run(capsys, *put, *url)
    assert code == 0, err

    def workflows(*flags: str) -> list[str]:
        code, out, err = run(capsys, "workflow", "list", "-o", "json", *flags, *url)
        assert code == 0, err
        return [w["id"] for w in orjson.loads(out)["items"]]

    assert workflows("--namespace", "team-a") == ["ns-only"]
    assert workflows("--namespace", "team-c") == []
    assert "ns-only" not in workflows("--namespace", "default") + workflows()
    monkeypatch.setenv("CRONSTREAM_NAMESPACE", "team-a")
    assert workflows() == ["ns-only"]
    assert workflows("--namespace", "team-c") == []  # the flag wins over the variable


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
