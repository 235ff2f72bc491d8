"""Start and stop real cronstream processes in tests, with deadlines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from service.store.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out.update(extra)
    return out


def cli(*args: str, timeout_s: float = 60, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
    )


def wait_until(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


class Service:
    """``cronstream serve`` as a child process on a free loopback port."""

    def __init__(
        self,
        data_dir: Path,
        redis_url: str | None = None,
        roles: str | None = None,
        insecure_dev: bool = True,
        **extra_env: str,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        extra = dict(extra_env)
        if redis_url is not None:
            extra["REDIS_URL"] = redis_url
        self.log = data_dir.parent / f"serve-{self.port}.log"
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(self.log, "wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
                *(["--roles", roles] if roles else []),
                # open unless a test is about tokens (insecure_dev=False)
                *(["--insecure-dev"] if insecure_dev else []),
            ],
            env=env(**extra),
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def wait_healthy(self, timeout_s: float = 30) -> Service:
        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"serve exited with {self.process.returncode}:\n{self.output()}"
                )
            return http_status(self.url + "/healthz") == 200

        wait_until(up, timeout_s, "serve to answer /healthz")
        return self

    def output(self) -> str:
        if not self._log_handle.closed:
            self._log_handle.flush()
        return self.log.read_text(errors="replace")

    def stop(self, timeout_s: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        self._log_handle.close()
        return int(self.process.returncode)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
