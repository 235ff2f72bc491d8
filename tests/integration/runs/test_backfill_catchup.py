"""Backfill and catch-up keep their word, end to end: the API, the ticker, a worker and a
local webhook, for every overlap policy, with and without a run of the schedule running
before. The times of one backfill (or of one tick's catch-up) never block each other:
they run one after another (all at once under ``allow_all``); the overlap policy
applies against the run that was running before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api.app import create_app
from service.clock import FixedClock
from service.commands import CommandService, ProjectionWaiter
from service.config import Settings
from service.domain.timeutil import parse_instant
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.ticker.ticker import Ticker
from service.worker.worker import Worker
from tests.integration.runs.test_runs import eventually
from tests.integration.ticker.helpers import schedule_events

SID = "every5"
POLICIES = ["skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"]
CLOSED = {"RunSucceeded", "RunFailed", "RunTimedOut", "RunCancelled", "RunDeadLettered"}
# a backfill of five times of a 5-second schedule, in the past
START, END = "2026-01-15T14:24:00Z", "2026-01-15T14:24:24Z"
TIMES = 5


@dataclass
class Hook:
    """A local webhook: answers at once, except the call it is told to hold (until
    ``gate``); it records which runs it saw."""

    url: str = ""
    seen: list[str] = field(default_factory=list)
    hold_next: bool = False
    gate: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def local_hook() -> AsyncIterator[Hook]:
    hook = Hook()

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        hook.seen.append(request.headers["webhook-id"])
        if hook.hold_next:
            hook.hold_next = False
            await asyncio.wait_for(hook.gate.wait(), timeout=20)
        else:
            await asyncio.sleep(0.02)  # long enough for runs at once to overlap
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    hook.url = f"http://127.0.0.1:{server.port}/hook"
    try:
        yield hook
    finally:
        hook.gate.set()
        await server.close()


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    async with local_hook() as h:
        yield h


@pytest.fixture
async def live(redis: Redis, settings: Settings, keys: Keyspace) -> AsyncIterator[TestClient]:
    """The API with the real clock, and a worker that notices cancel requests quickly."""
    client = TestClient(TestServer(create_app(settings, redis), host="127.0.0.1"))
    await client.start_server()
    store, waiter = EventStore(redis, keys), ProjectionWaiter(redis, keys)
    commands = CommandService(store, waiter, wait_timeout_s=0)
    worker = Worker(redis, keys, commands, concurrency=8, idle_bound_ms=600)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield client
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await client.close()


async def create(api: TestClient, hook: Hook, overlap: str) -> None:
    workflow = {"target": {"type": "http", "url": hook.url}, "timeout": "30s"}
    r = await api.put("/v1/workflows/wf", json={**workflow, "retry": {"max_attempts": 1}})
    assert r.status in (200, 201), await r.text()
    body = {
        "id": SID,
        "workflow_id": "wf",
        "spec": {"intervals": [{"every": "5s"}]},
        "policy": {"overlap": overlap, "catchup": "all"},
    }
    r = await api.post("/v1/schedules", json=body)
    assert r.status == 201, await r.text()


async def run_before(api: TestClient, hook: Hook) -> str:
    """A run of the schedule that is running (its webhook holds) when the times come."""
    hook.hold_next = True
    r = await api.post(f"/v1/schedules/{SID}/trigger", json={})
    run_id = str((await r.json())["run_id"])

    async def running() -> bool:
        return run_id in hook.seen

    await eventually(running)
    return run_id


async def catch_up(redis: Redis, keys: Keyspace) -> None:
    """The ticker comes back 25 s after the schedule's mark: five times are due."""
    mark = int(await redis.hget(keys.hwm(0), SID) or 0)
    ticker = Ticker(redis, keys, clock=FixedClock(mark + 25_000))
    assert await ticker.leases[0].acquire()
    await ticker.tick(0)


async def decide(api: TestClient, redis: Redis, keys: Keyspace, kind: str) -> None:
    if kind == "backfill":
        r = await api.post(f"/v1/schedules/{SID}/backfill", json={"start": START, "end": END})
        assert r.status == 200, await r.text()
    else:
        await catch_up(redis, keys)


@dataclass
class Log:
    events: list[tuple[str, Any]]

    def fires(self, trigger: str) -> list[dict[str, Any]]:
        return [d for t, d in self.events if t == "ScheduleFired" and d["trigger"] == trigger]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for t, d in self.events if t == kind]

    def position(self, kind: str | set[str], run_id: str) -> int:
        kinds = {kind} if isinstance(kind, str) else kind
        for i, (t, d) in enumerate(self.events):
            if t in kinds and d.get("run_id") == run_id:
                return i
        raise AssertionError(f"no {kinds} for {run_id}")


async def log_of(redis: Redis, keys: Keyspace) -> Log:
    return Log(await schedule_events(redis, keys, SID))


async def all_closed(redis: Redis, keys: Keyspace, runs: list[str]) -> Log:
    async def check() -> Log | None:
        log = await log_of(redis, keys)
        closed = {d["run_id"] for t, d in log.events if t in CLOSED}
        return log if set(runs) <= closed else None

    result: Log = await eventually(check, timeout_s=20)
    return result


def one_after_another(log: Log, runs: list[str], after: str | None = None) -> None:
    """Each run starts only once the run before it (and ``after``) has ended."""
    before = after
    for run_id in runs:
        if before is not None:
            assert log.position(CLOSED, before) < log.position("RunStarted", run_id)
        before = run_id


def trigger_of(kind: str) -> str:
    return "backfill" if kind == "backfill" else "schedule"


@pytest.mark.parametrize("kind", ["backfill", "catchup"])
@pytest.mark.parametrize("overlap", POLICIES)
async def test_times_alone_run_one_after_another_or_all_at_once(
    live: TestClient, hook: Hook, redis: Redis, keys: Keyspace, overlap: str, kind: str
) -> None:
    await create(live, hook, overlap)
    await decide(live, redis, keys, kind)
    fires = (await log_of(redis, keys)).fires(trigger_of(kind))
    runs = [f["run_id"] for f in fires]
    assert len(runs) == TIMES  # every time runs: nothing skipped or dropped
    log = await all_closed(redis, keys, runs)
    assert len(log.of("RunSucceeded")) == TIMES
    nominal = [parse_instant(f["nominal_time"]) for f in fires]
    assert nominal == sorted(nominal)
    if overlap == "allow_all":
        assert not any(f["held"] for f in fires)  # all queued at once
    else:
        assert [f.get("after") for f in fires] == [None, *runs[:-1]]
        one_after_another(log, runs)


@pytest.mark.parametrize("kind", ["backfill", "catchup"])
@pytest.mark.parametrize("overlap", POLICIES)
async def test_the_policy_applies_against_the_run_running_before(
    live: TestClient, hook: Hook, redis: Redis, keys: Keyspace, overlap: str, kind: str
) -> None:
    await create(live, hook, overlap)
    earlier = await run_before(live, hook)
    await decide(live, redis, keys, kind)
    log = await log_of(redis, keys)
    runs = [f["run_id"] for f in log.fires(trigger_of(kind))]
    if overlap == "skip":
        skipped = log.of("FireSkipped")
        assert runs == [] and len(skipped) == TIMES
        assert all(s["running"] == [earlier] for s in skipped)
        hook.gate.set()
        await all_closed(redis, keys, [earlier])
        return
    assert len(runs) == TIMES
    if overlap == "allow_all":  # they all run while the earlier run still runs
        log = await all_closed(redis, keys, runs)
        assert earlier not in {d["run_id"] for t, d in log.events if t in CLOSED}
        hook.gate.set()
        await all_closed(redis, keys, [earlier])
        return
    if overlap.endswith("_other"):
        [asked] = log.of("RunCancelRequested")
        assert asked == {
            "run_id": earlier,
            "requested_by": runs[0],
            "terminate": overlap == "terminate_other",
        }
    if overlap != "terminate_other":  # terminate stops it without the webhook's answer
        hook.gate.set()
    log = await all_closed(redis, keys, [earlier, *runs])
    assert len([d for d in log.of("RunSucceeded") if d["run_id"] in runs]) == TIMES
    one_after_another(log, runs, after=earlier)
    if overlap == "terminate_other":
        assert log.position("RunCancelled", earlier) >= 0


async def test_a_time_skipped_by_a_backfill_is_backfilled_again(
    live: TestClient, hook: Hook, redis: Redis, keys: Keyspace
) -> None:
    """Times a backfill skipped (a run was running) did not run: a later backfill runs
    them, with the same policy or another; times that ran are not run twice."""
    await create(live, hook, "skip")
    earlier = await run_before(live, hook)
    window = {"start": START, "end": END}
    r = await live.post(f"/v1/schedules/{SID}/backfill", json=window)
    assert (await r.json())["skipped"] == TIMES
    hook.gate.set()
    await all_closed(redis, keys, [earlier])
    r = await live.post(f"/v1/schedules/{SID}/backfill", json=window)
    assert await r.json() == {
        "nominal_times": TIMES,
        "fired": TIMES,
        "skipped": 0,
        "dropped": 0,
        "already_backfilled": 0,
    }
    runs = [f["run_id"] for f in (await log_of(redis, keys)).fires("backfill")]
    await all_closed(redis, keys, runs)
    r = await live.post(f"/v1/schedules/{SID}/backfill", json={**window, "overlap": "allow_all"})
    assert (await r.json())["already_backfilled"] == TIMES


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, str]:
    """The CLI as a user runs it; its table (one header line, one row) as a dict."""
    from service.cli.main import main

    assert main(list(args)) == 0
    header, row = capsys.readouterr().out.splitlines()
    return dict(zip(header.split(), row.split(), strict=True))


async def test_a_backfill_under_skip_runs_every_time(
    live: TestClient,
    hook: Hook,
    redis: Redis,
    keys: Keyspace,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`schedule backfill every5 --start …14:24Z --end …14:51Z` on a schedule with the
    default `overlap: skip` fired the first time and skipped the five others, which its
    own first run overlapped; then `--overlap allow_all` found all six backfilled."""
    r = await live.put("/v1/workflows/wf", json={"target": {"type": "http", "url": hook.url}})
    assert r.status in (200, 201)
    body = {"id": SID, "workflow_id": "wf", "spec": {"cron": ["*/5 * * * *"]}}
    assert (await live.post("/v1/schedules", json=body)).status == 201
    url = f"http://127.0.0.1:{live.port}"
    command = ["schedule", "backfill", SID, "--start", "2026-01-15T14:24:00Z"]
    command += ["--end", "2026-01-15T14:51:00Z", "--url", url]
    printed = await asyncio.to_thread(cli, capsys, *command)
    assert printed == {
        "NOMINAL_TIMES": "6",
        "FIRED": "6",
        "SKIPPED": "0",
        "DROPPED": "0",
        "ALREADY_BACKFILLED": "0",
    }
    runs = [f["run_id"] for f in (await log_of(redis, keys)).fires("backfill")]
    log = await all_closed(redis, keys, runs)
    assert len(log.of("RunSucceeded")) == 6 and sorted(hook.seen) == sorted(runs)
    one_after_another(log, runs)
    again = await asyncio.to_thread(cli, capsys, *command, "--overlap", "allow_all")
    assert (again["FIRED"], again["ALREADY_BACKFILLED"]) == ("0", "6")  # they all ran


async def test_catch_up_all_runs_every_time_missed_while_down(
    live: TestClient, hook: Hook, redis: Redis, keys: Keyspace
) -> None:
    """After 25 s down, `catchup: all` fired one catch-up run and recorded the others
    `skipped (overlap)`: they were queued at once and blocked each other."""
    await create(live, hook, "skip")
    await catch_up(redis, keys)
    log = await log_of(redis, keys)
    runs = [f["run_id"] for f in log.fires("schedule")]
    assert len(runs) == TIMES and log.of("FireSkipped") == []
    log = await all_closed(redis, keys, runs)
    assert len(log.of("RunSucceeded")) == TIMES
    one_after_another(log, runs)
    first, last = (f["nominal_time"] for f in (log.fires("schedule")[0], log.fires("schedule")[-1]))
    r = await live.get(f"/v1/schedules/{SID}/fires", params={"from": first, "to": last})
    assert [o["outcome"] for o in (await r.json())["items"]] == ["fired"] * TIMES
