"""One ``cronstream serve`` process for the CLI's tests (they talk to it over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.store.embedded import RedisProcess
from tests.process import Service


@pytest.fixture(scope="package")
def service(redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    running = Service(
        tmp_path_factory.mktemp("cli") / "data",
        redis_url=redis_server.url,
        CRONSTREAM_KEY_PREFIX="clitest",
    ).wait_healthy()
    yield running.url
    assert running.stop() == 0


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in this process: exit code, stdout, stderr."""
    from service.cli.main import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err
