"""``cronstream workflow secret`` and ``secret-key`` against a real ``serve``: a secret
printed once signs the deliveries of the serve's worker, and never reaches its log."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from service.store.embedded import RedisProcess
from service.store.secrets import parse_key
from tests.integration.cli.conftest import run
from tests.integration.runs.target import Target, local_target
from tests.process import Service

KEY = "u4vOJ3QbqXx0V8kRr3cQ0m3Xr1yqg8m0H3mJZ8rT0nE="


@pytest.fixture
def served(redis_server: RedisProcess, tmp_path: Path) -> Iterator[Service]:
    service = Service(
        tmp_path / "data",
        redis_url=redis_server.url,
        CRONSTREAM_KEY_PREFIX="secretcli",
        CRONSTREAM_SECRET_KEY=KEY,
    ).wait_healthy()
    yield service
    assert service.stop() == 0


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with local_target() as t:
        yield t


async def delivered(target: Target, count: int) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while len(target.calls["ok"]) < count:
        assert time.monotonic() < deadline, "no delivery in time"
        await asyncio.sleep(0.05)
    return target.calls["ok"][count - 1]


async def test_secrets_made_by_the_cli_sign_deliveries_and_stay_out_of_the_log(
    served: Service, target: Target, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = ("--url", served.url)
    spec = tmp_path / "hook.json"
    target_body = {"type": "http", "url": target.url + "/ok", "signing": "stored"}
    spec.write_text(json.dumps({"target": target_body, "retry": {"max_attempts": 1}}))
    assert run(capsys, "workflow", "put", "hook", "--file", str(spec), *url)[0] == 0

    code, secret, err = run(capsys, "workflow", "secret", "create", "hook", *url)
    assert code == 0 and secret.startswith("whsec_") and "shown once" in err
    secret = secret.strip()
    code, listing, _ = run(capsys, "workflow", "secret", "list", "hook", *url, "-o", "json")
    [listed] = json.loads(listing)["items"]
    assert secret not in listing and listed["id"] in err

    assert run(capsys, "workflow", "run", "hook", *url)[0] == 0
    call = await delivered(target, 1)
    Webhook(secret).verify(call["body"], call["headers"])  # type: ignore[arg-type]

    code, newer, _ = run(capsys, "workflow", "secret", "rotate", "hook", "--grace", "0s", *url)
    assert code == 0
    code, _, err = run(capsys, "workflow", "secret", "revoke", "hook", listed["id"], *url)
    assert code == 1 and "does not exist" in err  # ended by the rotation already
    assert run(capsys, "workflow", "run", "hook", *url)[0] == 0
    call = await delivered(target, 2)
    Webhook(newer.strip()).verify(call["body"], call["headers"])  # type: ignore[arg-type]

    log = served.log.read_text()
    assert "lease acquired" in log  # the serve's log, as it runs
    assert secret not in log and newer.strip() not in log and KEY not in log


def test_secret_key_generate_prints_a_usable_key(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "secret-key", "generate")
    assert code == 0 and len(parse_key(out.strip())) == 32
    assert run(capsys, "secret-key", "generate")[1] != out
