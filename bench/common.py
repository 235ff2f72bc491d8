"""Shared pieces of the benchmarks: processes, deadlines, percentiles, machine, memory.

Every wait here polls a condition until a deadline; every process started here
is stopped by the caller in a ``finally`` (``stop_process``) or by the context
managers below.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from service.store.embedded import (  # noqa: E402
    RedisProcess,
    find_redis_server,
    start_redis_server,
)

SERVICE_START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.02


class Deadline:
    """A point in monotonic time; loops ask it whether they may go on."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- processes ---------------------------------------------------------------


@contextlib.contextmanager
def redis_server(data_dir: Path, *, appendonly: bool = True) -> Iterator[RedisProcess]:
    """A real redis-server on 127.0.0.1 with its files in ``data_dir``, stopped on exit."""
    server = start_redis_server(data_dir, appendonly=appendonly)
    try:
        yield server
    finally:
        server.stop(STOP_TIMEOUT_S)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL; return the exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)
    return int(process.returncode)


def http_ok(url: str, timeout_s: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class ServiceProcess:
    """``python -m service serve`` running against a given Redis."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    stop_seconds: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_service(
    redis_url: str,
    work_dir: Path,
    port: int | None = None,
    roles: str | None = None,
    admin_token: str | None = None,
) -> ServiceProcess:
    """Start the service as a subprocess and wait (bounded) until /healthz answers 200.

    Open (``--insecure-dev``) unless given ``admin_token``: then the API asks for tokens
    and stores that one (CRONSTREAM_ADMIN_TOKEN)."""
    port = port or free_port()
    log_path = work_dir / "service.log"
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(REPO_ROOT)}
    args = [sys.executable, "-m", "service", "serve", "--port", str(port)]
    args += ["--data-dir", str(work_dir / "data"), "--log-level", "WARNING"]
    if roles:
        args += ["--roles", roles]
    if admin_token is None:
        args.append("--insecure-dev")
    else:
        env["CRONSTREAM_ADMIN_TOKEN"] = admin_token
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = ServiceProcess(process, f"http://127.0.0.1:{port}", log_path)
    deadline = Deadline(SERVICE_START_TIMEOUT_S)
    while not deadline.expired():
        if process.poll() is not None:
            raise RuntimeError(
                f"service exited with {process.returncode} before answering:\n" + service.log_tail()
            )
        if http_ok(service.base_url + "/healthz", timeout_s=0.5):
            return service
        time.sleep(POLL_S)
    stop_process(process)
    raise RuntimeError(
        f"service did not answer /healthz within {SERVICE_START_TIMEOUT_S}s:\n" + service.log_tail()
    )


@contextlib.contextmanager
def running_service(
    redis_url: str, work_dir: Path, admin_token: str | None = None
) -> Iterator[ServiceProcess]:
    service = start_service(redis_url, work_dir, admin_token=admin_token)
    try:
        yield service
    finally:
        started = time.monotonic()
        stop_process(service.process)
        service.stop_seconds = time.monotonic() - started


# -- figures -----------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _status_kb(pid: int | str, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def peak_rss_kb(pid: int | str = "self") -> int | None:
    """Peak resident set size (VmHWM) of a live process, in KiB; None if unknown."""
    return _status_kb(pid, "VmHWM")


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); False if refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def cpu_seconds(pid: int | str = "self") -> float | None:
    """User + system CPU time a live process has used so far, in seconds; None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces): state is field 3, utime 14.
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


BOOKKEEPING_COMMANDS = frozenset({"config", "info", "ping", "hello", "client"})


def command_calls(commandstats: dict[str, Any]) -> dict[str, int]:
    """Calls per Redis command from ``INFO commandstats``, bookkeeping left out."""
    calls = {}
    for name, stats in commandstats.items():
        command = name.removeprefix("cmdstat_")
        if command not in BOOKKEEPING_COMMANDS:
            calls[command] = int(stats["calls"])
    return calls


def describe_calls(calls: dict[str, int], per: int, unit: str, top: int = 6) -> str:
    """``redis commands 12.00/request (hget 7.00, ...)``: the commands one unit of work cost."""
    n = max(per, 1)
    busiest = sorted(calls.items(), key=lambda kv: -kv[1])[:top]
    detail = ", ".join(f"{name} {count / n:.2f}" for name, count in busiest)
    return f"redis commands {sum(calls.values()) / n:.2f}/{unit}, in-script included ({detail})"


def mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def _nproc() -> str:
    exe = shutil.which("nproc")
    if exe is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run([exe], capture_output=True, text=True, timeout=5, check=True)
            return done.stdout.strip()
    return str(len(os.sched_getaffinity(0)))


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown cpu"


def _redis_version() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError, FileNotFoundError):
        done = subprocess.run(
            [find_redis_server(), "--version"], capture_output=True, text=True, timeout=5
        )
        found = re.search(r"v=(\S+)", done.stdout)
        if found:
            return found.group(1)
    return "unknown"


def machine_line() -> str:
    """One line naming the machine a figure was measured on."""
    return (
        f"machine: {platform.system()} {platform.release()} {platform.machine()}, "
        f"{_cpu_model()}, cpu_count={os.cpu_count()}, nproc={_nproc()}, "
        f"python {platform.python_implementation()} {platform.python_version()}, "
        f"redis-server {_redis_version()}, load average {_load()}"
    )


def _load() -> str:
    """Other work on the machine skews the figures; say how busy it was."""
    try:
        return "/".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"
