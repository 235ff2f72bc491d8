"""``cronstream serve`` as a real process: embedded Redis, restart, outages, keyspace."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import redis as sync_redis

from service.store.embedded import start_redis_server
from tests.process import Service, cli, http_status, pid_alive, wait_until

pytestmark = pytest.mark.slow


def test_embedded_redis_survives_a_restart_with_everything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    service = Service(data).wait_healthy()
    try:
        url = service.url
        assert cli("workflow", "put", "scan", "--none", "--url", url).returncode == 0
        made = cli(
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
            "--url",
            url,
            "-o",
            "json",
        )
        assert made.returncode == 0, made.stderr
        info = json.loads((data / "redis.json").read_text())
        assert (data / "redis" / "appendonly.aof").exists()
    finally:
        assert service.stop() == 0, service.output()
    # clean shutdown: the embedded Redis is stopped too
    wait_until(lambda: not pid_alive(info["pid"]), 10, "embedded redis to stop")
    assert not (data / "redis.json").exists()

    again = Service(data).wait_healthy()
    try:
        got = cli("schedule", "get", "nightly", "--url", again.url, "-o", "json")
        assert got.returncode == 0, got.stderr
        body = json.loads(got.stdout)
        assert body["workflow_id"] == "scan" and body["spec"]["timezone"] == "Europe/Berlin"
        # a direct-to-Redis command finds the running embedded Redis
        rebuilt = cli("projections", "rebuild", "--data-dir", str(data))
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "2 events" in rebuilt.stdout
    finally:
        assert again.stop() == 0
    # and starts one for itself when none runs
    rebuilt = cli("projections", "rebuild", "--data-dir", str(data))
    assert rebuilt.returncode == 0 and "2 events" in rebuilt.stdout, rebuilt.stderr
    shadow = cli("projections", "rebuild", "--shadow", "--switch", "--data-dir", str(data))
    assert shadow.returncode == 0 and "switched" in shadow.stdout, shadow.stdout + shadow.stderr


def test_a_killed_serve_leaves_redis_that_the_next_serve_adopts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Service(data).wait_healthy()
    info = json.loads((data / "redis.json").read_text())
    first.process.send_signal(signal.SIGKILL)
    first.stop()
    assert pid_alive(info["pid"])  # Redis runs on, in its own session
    second = Service(data).wait_healthy()
    assert json.loads((data / "redis.json").read_text())["pid"] == info["pid"]
    assert second.stop() == 0
    wait_until(lambda: not pid_alive(info["pid"]), 10, "adopted redis to stop")


def test_redis_outage_gives_503_and_the_service_recovers(tmp_path: Path) -> None:
    redis_dir = tmp_path / "redis"
    server = start_redis_server(redis_dir)
    port = server.url.rsplit(":", 1)[1].split("/")[0]
    service = Service(tmp_path / "data", redis_url=server.url).wait_healthy()
    try:
        assert cli("workflow", "put", "w", "--none", "--url", service.url).returncode == 0
        server.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        server.process.wait(10)  # type: ignore[union-attr]
        assert http_status(service.url + "/v1/workflows/w") == 503
        assert http_status(service.url + "/readyz") == 503
        assert http_status(service.url + "/healthz") == 200
        down = cli("workflow", "get", "w", "--url", service.url)
        assert down.returncode == 1 and "503" in down.stderr
        server = start_redis_server(redis_dir, port=int(port))
        wait_until(
            lambda: http_status(service.url + "/v1/workflows/w") == 200, 20, "the API to recover"
        )
        # writes work again and the projector follows
        assert cli("workflow", "put", "w2", "--none", "--url", service.url).returncode == 0
        assert service.process.poll() is None
    finally:
        assert service.stop() == 0, service.output()
        server.stop()


def test_serve_refuses_a_newer_keyspace(tmp_path: Path) -> None:
    server = start_redis_server(tmp_path / "redis", appendonly=False)
    try:
        client = sync_redis.Redis.from_url(server.url)
        client.hset("cs:meta", "version", 99)
        client.close()
        service = Service(tmp_path / "data", redis_url=server.url)
        code = service.process.wait(30)
        service.stop()
        assert code != 0
        assert "keyspace is at version 99" in service.output()
    finally:
        server.stop()
