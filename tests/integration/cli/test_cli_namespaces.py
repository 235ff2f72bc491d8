"""The CLI names its namespace with --namespace or $CRONSTREAM_NAMESPACE."""

from __future__ import annotations

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
