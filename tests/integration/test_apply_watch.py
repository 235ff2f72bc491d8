"""The config directory watcher in this process: at start, once per settled change,
and an invalid directory logged and left unapplied until it changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from service.manifests.plan import Options
from service.manifests.watch import ConfigWatcher, WatchSettings
from service.store.eventstore import EventStore
from service.store.keys import Keyspace

FILE = """\
workflows:
  - id: wf1
    target: {type: none}
schedules:
  - id: s1
    workflow_id: wf1
    spec: {cron: ["0 2 * * *"]}
"""


async def until(check: Callable[[], bool], what: str, timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def watching(redis: Redis, keys: Keyspace, directory: Path) -> AsyncIterator[ConfigWatcher]:
    watcher = ConfigWatcher(EventStore(redis, keys), WatchSettings(directory, Options(), 0.05))
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        yield watcher
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def test_the_watcher_applies_at_start_and_once_per_change(
    redis: Redis, keys: Keyspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "jobs.yaml").write_text(FILE)
    store = EventStore(redis, keys)
    async with watching(redis, keys, tmp_path) as watcher:
        await until(lambda: watcher.applies == 1, "the apply at start")
        assert await redis.xlen(keys.log(0)) == 2
        with caplog.at_level(logging.ERROR, logger="service.manifests.watch"):
            (tmp_path / "jobs.yaml").write_text(FILE.replace('"0 2 * * *"', '"0 99 * * *"'))
            await until(lambda: "jobs.yaml:7:19: spec.cron.0" in caplog.text, "the error")
        assert watcher.applies == 1 and await redis.xlen(keys.log(0)) == 2
        (tmp_path / "jobs.yaml").write_text(FILE.replace("0 2", "0 3"))
        await until(lambda: watcher.applies == 2, "the fixed file applied")
        (tmp_path / "more.yaml").write_text(
            "schedules:\n" + FILE.split("schedules:\n")[1].replace("s1", "s2")
        )
        await until(lambda: watcher.applies == 3, "the next change")
        looks = watcher.looks
        await until(lambda: watcher.looks >= looks + 5, "five more looks")
        assert watcher.applies == 3  # no apply without a change
    events = await store.read_aggregate("schedule", "s1")
    assert [e.type for e in events] == ["ScheduleCreated", "ScheduleUpdated"]
    assert events[1].meta["actor"] == "serve --config-dir"


async def test_a_directory_that_cannot_be_read_is_said_once(
    redis: Redis, keys: Keyspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "jobs.yaml").write_text(FILE)
    async with watching(redis, keys, directory) as watcher:
        await until(lambda: watcher.applies == 1, "the apply at start")
        with caplog.at_level(logging.ERROR, logger="service.manifests.watch"):
            directory.rename(tmp_path / "away")
            looks = watcher.looks
            await until(lambda: watcher.looks >= looks + 5, "five looks")
            (tmp_path / "away").rename(directory)
            (directory / "jobs.yaml").write_text(FILE.replace("0 2", "0 4"))
            await until(lambda: watcher.applies == 2, "the change after it came back")
    unreadable = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(unreadable) == 1
