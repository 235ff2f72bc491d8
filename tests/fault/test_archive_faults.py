"""kill -9 of a real archive process at each step: a rerun completes the job and
nothing is lost, duplicated or reordered; the chain verifies; views rebuild the same.

The process stops itself (SIGSTOP) at the step named by CRONSTREAM_ARCHIVE_STOP_AT,
so the kill lands exactly there; the test then kills it with SIGKILL by pid.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from migrations.keyspace import check_keyspace
from service.audit.archive import STEPS
from service.audit.restore import restore
from service.audit.verify import summary, verify
from service.clock import FixedClock
from service.domain.timeutil import to_rfc3339
from service.store import segments
from service.store.archive_reader import read_all, read_archive
from service.store.keys import Keyspace
from tests.integration.audit.helpers import dump, log_ids, scripted_history
from tests.process import ROOT, env, wait_until

pytestmark = pytest.mark.slow


def archive_process(redis_url: str, directory: Path, *extra: str, **extra_env: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "service.cli.archive_cmd",
        "archive",
        "--before",
        to_rfc3339(int(time.time() * 1000) + 86_400_000),
        "--to",
        str(directory),
        "--segment-entries",
        "7",
        *extra,
    ]


def stopped(pid: int) -> bool:
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "T"


def kill_at(step: str, command: list[str], redis_url: str) -> None:
    """Run ``command`` until it stops itself at ``step``, then kill -9 it."""
    process = subprocess.Popen(
        command,
        env=env(REDIS_URL=redis_url, CRONSTREAM_ARCHIVE_STOP_AT=step),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: process.poll() is not None or stopped(process.pid), 30, f"stop at {step}"
        )
        assert process.poll() is None, process.communicate()
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)


@pytest.fixture
async def other(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url + "/1", socket_timeout=10)
    await client.flushdb()
    yield client
    await client.aclose()


async def every_id(redis: Redis, keys: Keyspace, directory: Path) -> list[str]:
    return [e.position async for e in read_all(redis, keys, 0, directory)]


@pytest.mark.parametrize("step", STEPS)
async def test_kill_at_each_step_then_rerun(
    step: str,
    api: TestClient,
    redis: Redis,
    other: Redis,
    redis_url: str,
    keys: Keyspace,
    clock: FixedClock,
    tmp_path: Path,
) -> None:
    await check_keyspace(redis, keys)  # what `serve` does on a fresh keyspace
    await scripted_history(api, redis, keys, clock)
    views = await dump(redis, "cs:{0}:view:*")
    ids = await log_ids(redis, keys)
    directory = tmp_path / "archive"
    command = archive_process(redis_url, directory)
    await asyncio.to_thread(kill_at, step, command, redis_url)

    # killed mid-way: archive plus log still hold every entry once, in order
    assert await every_id(redis, keys, directory) == ids
    assert (await verify(redis, keys, directory)).intact

    rerun = await asyncio.to_thread(
        subprocess.run,
        command,
        env=env(REDIS_URL=redis_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert await log_ids(redis, keys) == []
    assert [e.position for e in read_archive(directory, 0)] == ids
    assert await every_id(redis, keys, directory) == ids
    assert segments.uncommitted(directory, 0) == []
    report = await verify(redis, keys, directory)
    assert report.intact, summary(report)
    assert report.entries == len(ids)

    await restore(other, keys, directory)
    assert await dump(other, "cs:{0}:view:*") == views
