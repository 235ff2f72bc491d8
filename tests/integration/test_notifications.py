"""Notifications end to end: runs fail on the real worker, the notifier (subscriber and
delivery loop) tells a local HTTP receiver and a local SMTP server (aiosmtpd), each on
127.0.0.1, and GET /v1/notifications says what was sent or suppressed and why."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as MailMessage
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiosmtpd.smtp import SMTP, Envelope, Session
from redis.asyncio import Redis
from standardwebhooks import Webhook

from service.api.app import create_app
from service.commands import CommandService, ProjectionWaiter
from service.config import Settings
from service.notify.notifier import Notifier, NotifierTiming
from service.notify.subscriber import LOG_GROUP
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.store.secrets import generate_key
from service.worker.worker import Worker

SECRET_KEY = generate_key()
FAST = NotifierTiming(block_ms=100, probe_s=0.1, idle_ms=2000, max_attempts=4, retry_base_ms=50)


@dataclass
class Receiver:
    """A local webhook receiver: each path answers the statuses queued for it, then 200."""

    url: str = ""
    calls: dict[str, list[tuple[dict[str, str], bytes]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    statuses: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class Mailbox:
    port: int = 0
    messages: list[MailMessage] = field(default_factory=list)
    refuse_first: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse_first > 0:
            self.refuse_first -= 1
            return "451 4.3.0 try again later"
        assert isinstance(envelope.content, bytes)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        state.calls[name].append((dict(request.headers), await request.read()))
        queued = state.statuses.get(name) or [200]
        status = queued.pop(0) if len(queued) > 1 or name not in state.statuses else queued[0]
        return web.Response(status=status, text="ok" if status < 300 else "no")

    app = web.Application()
    app.router.add_post("/{name}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = f"http://127.0.0.1:{server.port}"
    yield state
    await server.close()


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    box = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(box), "127.0.0.1", 0)
    box.port = server.sockets[0].getsockname()[1]
    yield box
    server.close()
    await server.wait_closed()


@dataclass
class Stack:
    api: TestClient
    notifier: Notifier
    redis: Redis
    keys: Keyspace


@pytest.fixture
async def stack(redis: Redis, settings: Settings, keys: Keyspace) -> AsyncIterator[Stack]:
    """The API, a worker and a notifier, with short intervals, on the test Redis."""
    config = settings.with_overrides(secret_key=SECRET_KEY)
    client = TestClient(TestServer(create_app(config, redis), host="127.0.0.1"))
    await client.start_server()
    commands = CommandService(
        EventStore(redis, keys), ProjectionWaiter(redis, keys), wait_timeout_s=0
    )
    worker = Worker(redis, keys, commands, concurrency=8, idle_bound_ms=2000)
    notifier = Notifier(
        redis, keys, outbound=config.outbound_policy(), timing=FAST, secret_key=SECRET_KEY
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker.run(stop)), asyncio.create_task(notifier.run(stop))]
    yield Stack(client, notifier, redis, keys)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    await client.close()


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 10) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def put(api: TestClient, path: str, body: dict[str, Any], *ok: int) -> dict[str, Any]:
    r = await api.put(path, json=body)
    assert r.status in (ok or (200, 201)), await r.text()
    answer: dict[str, Any] = await r.json()
    return answer


async def failing_workflow(api: TestClient, url: str, wid: str = "job") -> None:
    body = {"target": {"type": "http", "url": url}, "retry": {"max_attempts": 1}}
    await put(api, f"/v1/workflows/{wid}", body)


async def run_now(api: TestClient, wid: str = "job") -> str:
    r = await api.post(f"/v1/workflows/{wid}/runs", json={"input": {"n": 1}})
    assert r.status == 201, await r.text()
    return str((await r.json())["run_id"])


async def records(api: TestClient, **query: str) -> list[dict[str, Any]]:
    r = await api.get("/v1/notifications", params={"limit": "500", **query})
    assert r.status == 200, await r.text()
    items: list[dict[str, Any]] = (await r.json())["items"]
    return items


async def settled(api: TestClient, count: int) -> list[dict[str, Any]]:
    """The records once ``count`` exist and none is queued or retrying any more."""

    async def check() -> list[dict[str, Any]] | None:
        found = await records(api)
        done = all(r["status"] not in ("queued", "retrying") for r in found)
        return found if len(found) >= count and done else None

    found: list[dict[str, Any]] = await eventually(check)
    return found


async def hook_channel(api: TestClient, url: str, cid: str = "hook", **extra: Any) -> str:
    body = {"target": {"type": "webhook", "url": url}, **extra}
    made = await put(api, f"/v1/notifications/channels/{cid}", body, 201)
    return str(made["secret"])


async def test_a_failed_run_is_told_once_to_a_signed_webhook_and_by_mail(
    stack: Stack, receiver: Receiver, mailbox: Mailbox
) -> None:
    api = stack.api
    secret = await hook_channel(api, receiver.url + "/hook")
    mail = {"type": "email", "host": "127.0.0.1", "port": mailbox.port}
    mail |= {"from": "cronstream@example.com", "to": ["ops@example.com"]}
    await put(api, "/v1/notifications/channels/mail", {"target": mail}, 201)
    await put(
        api,
        "/v1/notifications/rules/failures",
        {"on": "run_failed", "channels": ["hook", "mail"]},
        201,
    )
    await failing_workflow(api, receiver.url + "/fail")
    receiver.statuses["fail"] = [500]

    run_id = await run_now(api)
    told = await settled(api, 2)

    assert sorted((r["channel"], r["status"]) for r in told) == [("hook", "sent"), ("mail", "sent")]
    assert {r["run_id"] for r in told} == {run_id}
    assert all(r["rule"] == "failures" and r["trigger"] == "run_failed" for r in told)
    [(headers, body)] = receiver.calls["hook"]
    payload = Webhook(secret).verify(body, headers)  # raises unless the signature holds
    assert payload["run_id"] == run_id and payload["trigger"] == "run_failed"
    assert payload["workflow_id"] == "job" and "HTTP 500" in payload["summary"]
    assert headers["webhook-id"] == payload["id"]
    [message] = mailbox.messages
    assert run_id in message["Subject"] and message["To"] == "ops@example.com"

    # the log read again from its start: the same incident, told no second time
    await stack.redis.xgroup_setid(stack.keys.log(0), LOG_GROUP, "0")
    await eventually(lambda: _caught_up(stack))
    assert len(receiver.calls["hook"]) == 1 and len(mailbox.messages) == 1
    assert len(await records(api)) == 2


async def _caught_up(stack: Stack) -> bool:
    log = stack.keys.log(0)
    [group] = [g for g in await stack.redis.xinfo_groups(log) if g["name"] == LOG_GROUP.encode()]
    last = (await stack.redis.xrevrange(log, count=1))[0][0]
    return bool(group["last-delivered-id"] == last and group["pending"] == 0)


async def test_a_flapping_failure_is_told_once_and_the_rest_recorded_as_suppressed(
    stack: Stack, receiver: Receiver
) -> None:
    api = stack.api
    await hook_channel(api, receiver.url + "/hook")
    rule = {"on": "run_failed", "channels": ["hook"], "cooldown_s": 3600}
    await put(api, "/v1/notifications/rules/failures", rule, 201)
    await failing_workflow(api, receiver.url + "/fail")
    receiver.statuses["fail"] = [500]

    runs = [await run_now(api) for _ in range(20)]
    told = await settled(api, 20)

    assert Counter(r["status"] for r in told) == {"sent": 1, "suppressed": 19}
    assert {r["reason"] for r in told if r["status"] == "suppressed"} == {"cooldown"}
    assert {r["run_id"] for r in told} == set(runs)  # one incident per run, each recorded
    assert len(receiver.calls["hook"]) == 1
    suppressed = await records(api, status="suppressed")
    assert len(suppressed) == 19


async def test_a_channel_rate_caps_what_is_sent(stack: Stack, receiver: Receiver) -> None:
    api = stack.api
    await hook_channel(api, receiver.url + "/hook", rate_per_minute=3)
    rule = {"on": "run_failed", "channels": ["hook"], "cooldown_s": 0}
    await put(api, "/v1/notifications/rules/failures", rule, 201)
    await failing_workflow(api, receiver.url + "/fail")
    receiver.statuses["fail"] = [500]

    for _ in range(8):
        await run_now(api)
    told = await settled(api, 8)

    sent = [r for r in told if r["status"] == "sent"]
    limited = [r for r in told if r["reason"] == "rate_limited"]
    assert len(sent) + len(limited) == 8
    minutes = {r["created_at"][:16] for r in told}
    # the rate is per minute of the clock: a minute that turned over mid-test allows 3 more
    assert len(sent) == 3 * len(minutes)
    assert len(receiver.calls["hook"]) == len(sent)


async def test_a_receiver_answering_500_is_retried_until_it_takes_the_notification(
    stack: Stack, receiver: Receiver
) -> None:
    api = stack.api
    secret = await hook_channel(api, receiver.url + "/flaky")
    await put(
        api,
        "/v1/notifications/channels/down",
        {"target": {"type": "slack", "url": receiver.url + "/down"}},
        201,
    )
    rule = {"on": "run_failed", "channels": ["hook", "down"]}
    await put(api, "/v1/notifications/rules/failures", rule, 201)
    await failing_workflow(api, receiver.url + "/fail")
    receiver.statuses |= {"fail": [500], "flaky": [500, 500, 200], "down": [503]}

    await run_now(api)
    told = {r["channel"]: r for r in await settled(api, 2)}

    assert told["hook"]["status"] == "sent" and told["hook"]["attempts"] == 3
    calls = receiver.calls["flaky"]
    assert len(calls) == 3
    assert len({headers["webhook-id"] for headers, _ in calls}) == 1  # one id on every attempt
    for headers, body in calls:
        Webhook(secret).verify(body, headers)
    # a receiver that never takes it: bounded attempts, then failed with the last answer
    assert told["down"]["status"] == "failed" and told["down"]["attempts"] == FAST.max_attempts
    assert told["down"]["code"] == 503 and "HTTP 503" in told["down"]["error"]
    assert len(receiver.calls["down"]) == FAST.max_attempts
    assert orjson.loads(receiver.calls["down"][0][1])["text"].startswith("cronstream: run ")


async def test_mail_refused_for_now_is_sent_on_a_retry(
    stack: Stack, receiver: Receiver, mailbox: Mailbox
) -> None:
    api = stack.api
    mailbox.refuse_first = 1
    mail = {"type": "email", "host": "127.0.0.1", "port": mailbox.port}
    mail |= {"from": "cronstream@example.com", "to": ["ops@example.com", "dev@example.com"]}
    await put(api, "/v1/notifications/channels/mail", {"target": mail}, 201)
    await put(api, "/v1/notifications/rules/dead", {"on": "run_failed", "channels": ["mail"]}, 201)
    await failing_workflow(api, receiver.url + "/fail")
    receiver.statuses["fail"] = [500]

    await run_now(api)
    [told] = await settled(api, 1)

    assert told["status"] == "sent" and told["attempts"] == 2
    [message] = mailbox.messages
    assert message["To"] == "ops@example.com, dev@example.com"


async def schedule(api: TestClient, sid: str, wid: str, **policy: Any) -> None:
    body = {"id": sid, "workflow_id": wid, "spec": {"cron": ["* * * * * *"]}, "policy": policy}
    r = await api.post("/v1/schedules", json=body)
    assert r.status == 201, await r.text()


async def ticking(stack: Stack, until: Callable[[], Awaitable[Any]], timeout_s: float = 15) -> Any:
    """Fire what is due (a ticker holding the lease, on Redis's clock) until ``until``."""
    from service.ticker.ticker import Ticker

    ticker = Ticker(stack.redis, stack.keys)
    assert await ticker.leases[0].acquire()

    async def check() -> Any:
        await ticker.tick(0)
        return await until()

    return await eventually(check, timeout_s)


async def test_an_auto_paused_schedule_is_told_and_filters_hold(
    stack: Stack, receiver: Receiver
) -> None:
    api = stack.api
    await hook_channel(api, receiver.url + "/hook")
    paused = {"on": "schedule_auto_paused", "channels": ["hook"], "schedule_id": "s"}
    await put(api, "/v1/notifications/rules/paused", paused, 201)
    other = {"on": "run_failed", "channels": ["hook"], "workflow_id": "other"}
    await put(api, "/v1/notifications/rules/other", other, 201)
    await failing_workflow(api, receiver.url + "/fail")
    receiver.statuses["fail"] = [500]
    await schedule(api, "s", "job", pause_on_failure=True)

    async def told() -> list[dict[str, Any]]:
        return [r for r in await records(api) if r["status"] == "sent"]

    [record] = await ticking(stack, told)

    assert record["rule"] == "paused" and record["trigger"] == "schedule_auto_paused"
    assert record["schedule_id"] == "s" and record["run_id"]
    assert "schedule s was paused after a failed run" in record["summary"]
    view = await (await api.get("/v1/schedules/s")).json()
    assert view["status"] == "paused"
    assert [r["rule"] for r in await records(api)] == ["paused"]  # the workflow filter held


async def test_overlap_skips_past_the_threshold_are_told_once(
    stack: Stack, receiver: Receiver
) -> None:
    api = stack.api
    release = asyncio.Event()
    await hook_channel(api, receiver.url + "/hook")
    rule = {"on": "overlap_skipped", "channels": ["hook"], "threshold": 2, "window_s": 3600}
    await put(api, "/v1/notifications/rules/overlap", rule, 201)
    held = web.Application()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.wait_for(release.wait(), 20)
        return web.Response(status=200)

    held.router.add_post("/slow", slow)
    server = TestServer(held, host="127.0.0.1")
    await server.start_server()
    try:
        body = {"target": {"type": "http", "url": f"http://127.0.0.1:{server.port}/slow"}}
        await put(api, "/v1/workflows/slow", body)
        await schedule(api, "busy", "slow", overlap="skip")

        async def told() -> list[dict[str, Any]]:
            return [r for r in await records(api) if r["status"] == "sent"]

        [record] = await ticking(stack, told)
    finally:
        release.set()
        await server.close()

    assert record["trigger"] == "overlap_skipped" and record["count"] == 3
    assert record["subject"] == "busy" and record["incident"].startswith("overlap_skipped:busy:")
    assert len(receiver.calls["hook"]) == 1


async def test_a_ticker_that_falls_behind_is_told_once_a_window(
    stack: Stack, receiver: Receiver
) -> None:
    api = stack.api
    await hook_channel(api, receiver.url + "/hook")
    rule = {"on": "ticker_behind", "channels": ["hook"], "lag_s": 30}
    await put(api, "/v1/notifications/rules/lag", rule, 201)
    seconds, _ = await stack.redis.time()
    # a due schedule no ticker took for two minutes: no ticker runs in this test
    await stack.redis.zadd(stack.keys.due(0), {"forgotten": (int(seconds) - 120) * 1000})

    [record] = await settled(api, 1)
    probes = await stack.notifier.subscriber.probe_once()  # probed again: the same incident

    assert probes == 0 and len(await records(api)) == 1
    assert record["trigger"] == "ticker_behind" and record["subject"] == "partition-0"
    assert record["details"]["overdue"].startswith("2m")
    assert "the ticker is behind on partition 0" in record["summary"]


async def test_channel_secrets_stay_out_of_records_views_logs_and_the_log(
    stack: Stack, receiver: Receiver, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    api = stack.api
    slack_url = receiver.url + "/T0SECRET-B0SECRET-tokentokentoken"
    password = "pw-never-shown-0xC0FFEE"
    await put(
        api, "/v1/notifications/channels/team", {"target": {"type": "slack", "url": slack_url}}, 201
    )
    mail = {"type": "email", "host": "127.0.0.1", "port": mailbox.port, "from": "cs@example.com"}
    mail |= {"to": ["ops@example.com"], "username": "cs", "password": password}
    await put(api, "/v1/notifications/channels/mail", {"target": mail}, 201)
    secret = await hook_channel(api, receiver.url + "/hook")
    rule = {"on": "run_failed", "channels": ["team", "mail", "hook"]}
    await put(api, "/v1/notifications/rules/all", rule, 201)
    await failing_workflow(api, receiver.url + "/fail")
    receiver.statuses |= {"fail": [500], "T0SECRET-B0SECRET-tokentokentoken": [500]}

    with caplog.at_level("DEBUG"):
        await run_now(api)
        told = {r["channel"]: r for r in await settled(api, 3)}

    assert told["team"]["status"] == "failed"  # the Slack receiver never took it
    # the server offers no login without TLS: no retry can help
    assert told["mail"]["status"] == "failed" and told["mail"]["attempts"] == 1
    assert told["hook"]["status"] == "sent"
    shown = [
        await (await api.get(p)).text() for p in ("/v1/notifications", "/v1/notifications/channels")
    ]
    shown.append(await (await api.get("/v1/events", params={"limit": "500"})).text())
    entries = await stack.redis.xrange(stack.keys.log(0))
    shown.append(str(entries))
    ours = ("service", "cronstream", "projections")  # not the receivers' own access logs
    shown += [r.getMessage() for r in caplog.records if r.name.startswith(ours)]
    for text in shown:
        for value in ("T0SECRET", password, secret):
            assert value not in text


async def test_dead_letters_and_missed_fires_in_the_log_are_told(
    stack: Stack, receiver: Receiver
) -> None:
    api = stack.api
    await hook_channel(api, receiver.url + "/hook")
    await put(
        api, "/v1/notifications/rules/dead", {"on": "dead_lettered", "channels": ["hook"]}, 201
    )
    missed = {"on": "fires_missed", "channels": ["hook"], "workflow_id": "nightly-job"}
    await put(api, "/v1/notifications/rules/missed", missed, 201)
    await put(api, "/v1/notifications/rules/missed-all", missed | {"workflow_id": None}, 201)
    # as the run and fire scripts write them: a run no schedule made, and a schedule's fires
    log, run = stack.keys.log(0), stack.keys.run(0, "run_dead")
    await stack.redis.hset(run, mapping={"sid": "job", "kind": "workflow", "workflow_id": "job"})
    dead = {"run_id": "run_dead", "reason": "too many deliveries", "deliveries": 5}
    fires = {"count": 3, "first": "2026-01-15T01:00:00Z", "last": "2026-01-15T03:00:00Z"}
    fires |= {"reason": "catchup latest", "policy": "latest"}
    for kind, sid, data in (("RunDeadLettered", "job", dead), ("FiresMissed", "nightly", fires)):
        entry = {"type": kind, "v": 1, "sid": sid, "data": orjson.dumps(data), "meta": "{}"}
        await stack.redis.xadd(log, entry)  # type: ignore[arg-type]

    told = {r["rule"]: r for r in await settled(api, 2)}

    assert set(told) == {"dead", "missed-all"}  # the workflow filter left "missed" out
    assert told["dead"]["run_id"] == "run_dead" and told["dead"]["workflow_id"] == "job"
    assert told["dead"]["schedule_id"] is None and told["dead"]["subject"] == "job"
    assert "run run_dead was dead-lettered (workflow job)" in told["dead"]["summary"]
    assert told["missed-all"]["schedule_id"] == "nightly"
    assert "schedule nightly missed 3 fire(s)" in told["missed-all"]["summary"]
    assert len(receiver.calls["hook"]) == 2
