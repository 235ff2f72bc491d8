"""Tokens across real ``cronstream serve`` processes: the first admin token, one rate
bucket shared by two API processes, the CLI's bearer token, --insecure-dev.

Everything listens on and talks to 127.0.0.1 only; a refused --host is checked before
anything is bound.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cli.main import main
from service.domain.tokens import check_token, token_hash, token_id
from service.store.embedded import RedisProcess, free_port
from tests.process import ROOT, Service, cli, env, wait_until

pytestmark = pytest.mark.slow

TOKEN = re.compile(r"cs_[0-9A-Za-z]{36}")


def get(url: str, token: str | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)
    except (urllib.error.URLError, OSError):
        return 0, {}


@pytest.fixture
def prefix() -> str:
    """A keyspace of this test's own on the session's Redis."""
    return f"auth{uuid.uuid4().hex[:8]}"


class Serve:
    """``cronstream serve`` (tokens on) with stdout and the log (stderr) kept apart."""

    def __init__(self, tmp: Path, redis_url: str, prefix: str, **extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout = tmp / f"stdout-{self.port}.txt"
        self.stderr = tmp / f"stderr-{self.port}.txt"
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "serve", "--port", str(self.port)],
                env=env(REDIS_URL=redis_url, CRONSTREAM_KEY_PREFIX=prefix, **extra),
                stdout=out,
                stderr=err,
                cwd=ROOT,
            )

    def wait_healthy(self) -> Serve:
        def up() -> bool:
            assert self.process.poll() is None, self.stderr.read_text()
            return get(self.url + "/healthz")[0] == 200

        wait_until(up, 30, "serve to answer /healthz")
        return self

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=20)


@pytest.fixture
def serves(tmp_path: Path) -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for serve in started:
        if serve.process.poll() is None:
            assert serve.stop() == 0, serve.stderr.read_text()


def test_serve_prints_a_first_admin_token_once(
    tmp_path: Path, redis_server: RedisProcess, prefix: str, serves: list[Serve]
) -> None:
    first = Serve(tmp_path, redis_server.url, prefix)
    serves.append(first.wait_healthy())
    printed = TOKEN.findall(first.stdout.read_text())
    assert len(printed) == 1, first.stdout.read_text()
    token = printed[0]
    log = first.stderr.read_text()
    assert token not in log and token_id(token_hash(token)) in log
    assert get(first.url + "/v1/schedules")[0] == 401
    assert get(first.url + "/v1/schedules", token)[0] == 200
    second = Serve(tmp_path, redis_server.url, prefix)
    serves.append(second.wait_healthy())
    assert TOKEN.findall(second.stdout.read_text() + second.stderr.read_text()) == []
    assert get(second.url + "/v1/workflows", token)[0] == 200


def test_serve_stores_the_admin_token_it_is_given(
    tmp_path: Path, redis_server: RedisProcess, prefix: str, serves: list[Serve]
) -> None:
    token = check_token(cli("token", "generate").stdout.strip())
    for _ in range(2):  # stored on the first start, found again on the second
        serve = Serve(tmp_path, redis_server.url, prefix, CRONSTREAM_ADMIN_TOKEN=token)
        serves.append(serve.wait_healthy())
        assert get(serve.url + "/v1/runs", token)[0] == 200
        assert TOKEN.findall(serve.stdout.read_text() + serve.stderr.read_text()) == []
        assert serve.stop() == 0
    listed = cli("token", "list", "-o", "json", REDIS_URL=redis_server.url,
                 CRONSTREAM_KEY_PREFIX=prefix)  # fmt: skip
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["scopes"]) == (token_id(token_hash(token)), ["admin"])


def test_serve_refuses_a_malformed_admin_token(
    tmp_path: Path, redis_server: RedisProcess, prefix: str
) -> None:
    serve = Serve(tmp_path, redis_server.url, prefix, CRONSTREAM_ADMIN_TOKEN="hunter2")
    assert serve.process.wait(timeout=30) != 0
    log = serve.stderr.read_text()
    assert "CRONSTREAM_ADMIN_TOKEN" in log and "token generate" in log and "hunter2" not in log


def test_two_api_processes_share_a_token_bucket(
    tmp_path: Path, redis_server: RedisProcess, prefix: str, serves: list[Serve]
) -> None:
    admin = check_token(cli("token", "generate").stdout.strip())
    pair = [
        Serve(tmp_path, redis_server.url, prefix, CRONSTREAM_ADMIN_TOKEN=admin) for _ in range(2)
    ]
    serves.extend(pair)
    for serve in pair:
        serve.wait_healthy()
    made = cli("token", "create", "--scopes", "schedules:read", "--rate", "4/h",
               REDIS_URL=redis_server.url, CRONSTREAM_KEY_PREFIX=prefix)  # fmt: skip
    token = check_token(made.stdout.strip())
    answers = [get(pair[i % 2].url + "/v1/schedules", token) for i in range(5)]
    assert [status for status, _ in answers] == [200, 200, 200, 200, 429]
    assert [h["RateLimit-Remaining"] for _, h in answers] == ["3", "2", "1", "0", "0"]
    retry = int(answers[-1][1]["Retry-After"])
    assert 800 <= retry <= 900  # one request comes back every 15 minutes
    assert get(pair[0].url + "/v1/schedules", admin)[0] == 200  # a bucket per token


def test_the_cli_sends_its_token(
    tmp_path: Path, redis_server: RedisProcess, prefix: str, serves: list[Serve]
) -> None:
    serve = Serve(tmp_path, redis_server.url, prefix)
    serves.append(serve.wait_healthy())
    admin = TOKEN.findall(serve.stdout.read_text())[0]
    where = {"REDIS_URL": redis_server.url, "CRONSTREAM_KEY_PREFIX": prefix}
    reader = cli("token", "create", "--scopes", "runs:read", **where).stdout.strip()
    url = {"CRONSTREAM_URL": serve.url}
    assert cli("schedule", "list", CRONSTREAM_TOKEN=admin, **url).returncode == 0
    anonymous = cli("schedule", "list", **url)
    assert anonymous.returncode == 1
    assert "401" in anonymous.stderr and "CRONSTREAM_TOKEN" in anonymous.stderr
    scoped = cli("schedule", "list", CRONSTREAM_TOKEN=reader, **url)
    assert scoped.returncode == 1 and "403" in scoped.stderr and "schedules:read" in scoped.stderr
    assert cli("runs", "list", CRONSTREAM_TOKEN=reader, **url).returncode == 0


def test_insecure_dev_is_open_and_says_so(tmp_path: Path, redis_server: RedisProcess) -> None:
    service = Service(tmp_path / "data", redis_url=redis_server.url).wait_healthy()
    try:
        status, headers = get(service.url + "/v1/schedules")
        assert status == 200 and "RateLimit-Limit" not in headers
    finally:
        assert service.stop() == 0
    lines = [json.loads(line) for line in service.output().splitlines() if line.startswith("{")]
    warned = [e for e in lines if e["level"] == "warning" and "insecure dev" in e["message"]]
    assert warned and "127.0.0.1" in warned[0]["message"]
    assert not TOKEN.findall(service.output())


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_insecure_dev_refuses_another_host_before_starting(
    host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused by the flag's check itself: nothing is bound, nothing connected."""
    assert main(["serve", "--insecure-dev", "--host", host]) == 2
    err = capsys.readouterr().err
    assert f"not on {host}" in err and "127.0.0.1 only" in err
