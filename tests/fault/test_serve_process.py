"""``cronstream serve`` as a real process: embedded Redis, restart, outages, keyspace."""

from __future__ import annotations

import json
import os
import signal
import socketserver
import threading
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from service.store.embedded import start_redis_server
from tests.process import Service, cli, http_status, pid_alive, wait_until

pytestmark = pytest.mark.slow


def redis_info(url: str, section: str) -> dict[str, Any]:
    client = sync_redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        info: dict[str, Any] = client.info(section)
        return info
    finally:
        client.close()


def answers(url: str) -> bool:
    try:
        return bool(redis_info(url, "server"))
    except (sync_redis.RedisError, OSError):
        return False


def test_embedded_redis_survives_a_restart_with_everything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Service(data).wait_healthy()
    try:
        url = first.url
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
        killed = json.loads((data / "redis.json").read_text())
        persistence = redis_info(killed["url"], "persistence")
        assert persistence["aof_enabled"] == 1
        # what was acknowledged is in the AOF file, where a killed process cannot lose it
        wait_until(
            lambda: redis_info(killed["url"], "persistence")["aof_buffer_length"] == 0,
            10,
            "the AOF buffer to be written",
        )
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.stop()
    os.kill(killed["pid"], signal.SIGKILL)  # kill -9: Redis writes nothing on the way down
    wait_until(lambda: not answers(killed["url"]), 10, "the killed redis to go")

    again = Service(data).wait_healthy()
    try:
        info = json.loads((data / "redis.json").read_text())
        assert info["pid"] != killed["pid"]
        got = cli("schedule", "get", "nightly", "--url", again.url, "-o", "json")
        assert got.returncode == 0, got.stderr
        body = json.loads(got.stdout)
        assert body["workflow_id"] == "scan" and body["spec"]["timezone"] == "Europe/Berlin"
        # a direct-to-Redis command finds the running embedded Redis
        rebuilt = cli("projections", "rebuild", "--data-dir", str(data))
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "2 events" in rebuilt.stdout
    finally:
        assert again.stop() == 0, again.output()
    # clean shutdown: the embedded Redis is stopped too
    wait_until(lambda: not answers(info["url"]), 10, "embedded redis to stop")
    assert not (data / "redis.json").exists()
    # and a command starts one for itself when none runs, on the same data
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


class OldRedis(socketserver.ThreadingTCPServer):
    """A server on 127.0.0.1 that speaks enough RESP to pass for an old Redis.

    6.0 knows HELLO (the client opens each connection with it) and reports its
    version in INFO; 5.0 answers HELLO with an unknown-command error.
    """

    daemon_threads = True

    def __init__(self, version: str) -> None:
        super().__init__(("127.0.0.1", 0), _OldRedisHandler)
        self.version = version
        self.commands: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.server_address[1]}/0"


def _bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


class _OldRedisHandler(socketserver.StreamRequestHandler):
    server: OldRedis

    def handle(self) -> None:
        while header := self.rfile.readline():
            args = [self._read_bulk() for _ in range(int(header[1:]))]
            name = args[0].upper()
            self.server.commands.append(" ".join(args[:2]).upper())
            self.wfile.write(self._reply(name))

    def _reply(self, name: str) -> bytes:
        version = self.server.version
        if name == "HELLO" and version >= "6":
            fields = ("server", "redis", "version", version, "proto")
            return b"%%3\r\n%s:3\r\n" % b"".join(map(_bulk, fields))
        if name == "PING":  # the client's health check
            return b"+PONG\r\n"
        if name == "INFO":
            return _bulk(f"# Server\r\nredis_version:{version}\r\n")
        return b"-ERR unknown command '%s'\r\n" % name.encode()

    def _read_bulk(self) -> str:
        size = int(self.rfile.readline()[1:])
        return self.rfile.read(size + 2)[:-2].decode()


@pytest.mark.parametrize(
    ("version", "named"),
    [("6.0.16", "version 6.0.16"), ("5.0.7", "older than 6.0 (it does not know HELLO)")],
)
def test_serve_refuses_a_redis_older_than_6_2(tmp_path: Path, version: str, named: str) -> None:
    with OldRedis(version) as old:
        threading.Thread(target=old.serve_forever, daemon=True).start()
        try:
            service = Service(tmp_path / "data", redis_url=old.url)
            code = service.process.wait(30)
            service.stop()
        finally:
            old.shutdown()
    output = service.output()
    assert code == 1, output
    assert f"cronstream: the Redis server is {named}; cronstream needs Redis 6.2" in output
    assert "Traceback" not in output, output
    # refused on INFO alone: nothing was read from or written to the keyspace
    assert {c.split()[0] for c in old.commands} <= {"HELLO", "CLIENT", "PING", "INFO"}, old.commands
