"""``serve --allow-private-targets`` lifts the outbound rule, as the variable does."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli.main import main
from service.config import Settings


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """The settings ``serve`` would run with (nothing is started)."""
    seen: list[Settings] = []

    async def serve(settings: Settings) -> None:
        seen.append(settings)

    monkeypatch.setattr("service.server.serve", serve)
    monkeypatch.setattr("service.telemetry.setup_logging", lambda *args: None)
    return seen


def test_the_flag_allows_private_targets(
    served: list[Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRONSTREAM_ALLOW_PRIVATE_TARGETS")
    assert main(["serve", "--data-dir", str(tmp_path)]) == 0
    assert main(["serve", "--data-dir", str(tmp_path), "--allow-private-targets"]) == 0
    assert [s.allow_private_targets for s in served] == [False, True]
    assert served[1].outbound_policy().check_host("127.0.0.1") is None
    assert served[0].outbound_policy().check_host("127.0.0.1") is not None


def test_without_the_flag_the_environment_decides(
    served: list[Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRONSTREAM_ALLOW_PRIVATE_TARGETS", "0")
    monkeypatch.setenv("CRONSTREAM_TARGET_ALLOWLIST", "10.0.0.0/8")
    assert main(["serve", "--data-dir", str(tmp_path)]) == 0
    [settings] = served
    assert not settings.allow_private_targets
    assert settings.target_allowlist == ("10.0.0.0/8",)
