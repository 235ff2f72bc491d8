"""The example subscribers run as documented and resume where they stopped."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api import stream  # noqa: F401  (registers the stream route)
from service.api.app import create_app
from service.clock import FixedClock
from service.config import Settings
from service.domain.tokens import Scope
from service.store.keys import Keyspace
from tests.integration.api.helpers import WORKFLOW, create_schedule, put_workflow
from tests.process import ROOT, env
from tests.tokens import bearer, make_token

TIMEOUT_S = 30


async def run(script: str, *args: str) -> list[str]:
    code, out, err = await run_process(script, *args)
    assert code == 0, err
    return out.splitlines()


async def run_process(script: str, *args: str, **extra_env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env(**extra_env),
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=TIMEOUT_S)
    return int(process.returncode or 0), out.decode(), err.decode()


async def test_subscriber_resumes_from_its_state_file(api: TestClient, tmp_path: Path) -> None:
    await put_workflow(api)
    await create_schedule(api)
    url = str(api.make_url("/"))
    state = tmp_path / "last-id"
    first = await run("subscriber.py", "--url", url, "--state", str(state), "--max-events", "2")
    assert len(first) == 2 and "ScheduleCreated" in first[1]
    saved = state.read_text().strip()
    await api.post("/v1/schedules/nightly/pause")
    then = await run("subscriber.py", "--url", url, "--state", str(state), "--max-events", "1")
    assert len(then) == 1 and "SchedulePaused" in then[0]
    assert state.read_text().strip() != saved


async def test_subscriber_filters(api: TestClient, tmp_path: Path) -> None:
    await put_workflow(api)
    await create_schedule(api, "a")
    await create_schedule(api, "b")
    url = str(api.make_url("/"))
    lines = await run(
        "subscriber.py",
        *("--url", url, "--state", str(tmp_path / "id"), "--schedule", "b", "--max-events", "1"),
    )
    assert len(lines) == 1 and " b " in lines[0]


async def test_consumer_group_reads_pending_first_then_new_entries(
    api: TestClient, redis: Redis, keys: Keyspace, redis_url: str
) -> None:
    await put_workflow(api)
    await create_schedule(api)
    await api.post("/v1/schedules/nightly/pause")
    log = keys.log(0)
    ids = [eid.decode() for eid, _ in await redis.xrange(log)]
    assert len(ids) == 3
    # a consumer that crashed: its group read two entries and acknowledged none
    await redis.xgroup_create(log, "audit", id="0")
    await redis.xreadgroup("audit", "c1", {log: ">"}, count=2)
    common = ("--redis", redis_url, "--group", "audit", "--consumer", "c1")
    lines = await run("consumer_group.py", *common, "--max-events", "3")
    assert [line.split()[1] for line in lines] == ids  # the two pending, then the new one
    pending = await redis.xpending(log, "audit")
    assert pending["pending"] == 0
    await api.post("/v1/schedules/nightly/resume")
    lines = await run("consumer_group.py", *common, "--max-events", "1")
    assert len(lines) == 1 and "ScheduleResumed" in lines[0]


async def test_subscriber_sends_its_token(
    redis: Redis, settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    app = create_app(replace(settings, auth=True), redis, clock=clock)
    async with TestClient(TestServer(app, host="127.0.0.1")) as secured:
        admin = await make_token(redis, Scope.ADMIN, now_ms=clock.now_ms())
        put = await secured.put("/v1/workflows/scan", json=WORKFLOW, headers=bearer(admin))
        assert put.status == 201
        url = str(secured.make_url("/"))
        args = ("subscriber.py", "--url", url, "--state", str(tmp_path / "id"))
        refused = await run_process(*args, "--max-events", "1")
        assert refused[0] == 1 and "CRONSTREAM_TOKEN" in refused[2]
        reader = await make_token(redis, Scope.EVENTS_READ, now_ms=clock.now_ms())
        code, out, _ = await run_process(*args, "--max-events", "1", CRONSTREAM_TOKEN=reader)
        assert code == 0 and "WorkflowCreated" in out
