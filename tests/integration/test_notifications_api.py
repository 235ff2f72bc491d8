"""The notification API: channels and rules kept with their secrets sealed and never shown,
bad input refused naming the field, and GET /v1/notifications paging and filtering what
was told; the store's decisions (windows, cooldowns, rates) against the domain's rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api.app import create_app
from service.clock import FixedClock
from service.config import Settings
from service.domain.notifications import (
    ChannelConfig,
    Occurrence,
    RuleConfig,
    Trigger,
    in_cooldown,
    incident_of,
)
from service.notify.subscriber import Subscriber
from service.store.keys import Keyspace
from service.store.notifications import NotificationStore
from service.store.secrets import generate_key

SECRET_KEY = generate_key()
PASSWORD = "s3cret-smtp-password"
HOOK_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
SLACK_URL = "https://hooks.slack.example/services/T000/B000/XXXXsecretXXXX"
MAIL = {"type": "email", "host": "127.0.0.1", "port": 2525, "from": "cs@example.com"}


@pytest.fixture
async def keyed(redis: Redis, settings: Settings, clock: FixedClock) -> AsyncIterator[TestClient]:
    """The API with a CRONSTREAM_SECRET_KEY, as a server that keeps secrets has."""
    app = create_app(settings.with_overrides(secret_key=SECRET_KEY), redis, clock=clock)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client
    await client.close()


async def put(api: TestClient, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    r = await api.put(path, json=body)
    return r.status, await r.json()


async def test_secrets_are_sealed_in_redis_and_never_shown(keyed: TestClient, redis: Redis) -> None:
    mail = MAIL | {"to": ["ops@example.com"], "username": "cs", "password": PASSWORD}
    bodies = {
        "hook": {
            "target": {"type": "webhook", "url": "http://127.0.0.1:9/h", "secret": HOOK_SECRET}
        },
        "slack": {"target": {"type": "slack", "url": SLACK_URL}},
        "mail": {"target": mail | {"starttls": True}},
    }
    for cid, body in bodies.items():
        status, view = await put(keyed, f"/v1/notifications/channels/{cid}", body)
        assert status == 201, view
        assert "secret" not in view  # a given secret is not echoed back
    shown = [await (await keyed.get(f"/v1/notifications/channels/{c}")).text() for c in bodies]
    shown.append(await (await keyed.get("/v1/notifications/channels")).text())
    stored = b""
    for key in await redis.keys("cs:{notify}:*"):
        if await redis.type(key) == b"hash":
            stored += b" ".join((await redis.hgetall(key)).values())
    for secret in (PASSWORD, HOOK_SECRET, SLACK_URL, "XXXXsecretXXXX"):
        assert all(secret not in text for text in shown)
        assert secret.encode() not in stored
    views = (await (await keyed.get("/v1/notifications/channels")).json())["items"]
    assert {v["id"]: v["secrets"] for v in views} == {
        "hook": ["secret"],
        "mail": ["password"],
        "slack": ["url"],
    }
    mail_view = next(v for v in views if v["id"] == "mail")
    assert mail_view["target"]["username"] == "cs" and mail_view["target"]["starttls"] is True


async def test_a_webhook_without_a_secret_gets_one_shown_once(keyed: TestClient) -> None:
    body = {"target": {"type": "webhook", "url": "http://127.0.0.1:9/h"}}
    status, made = await put(keyed, "/v1/notifications/channels/hook", body)
    assert status == 201 and made["secret"].startswith("whsec_")
    status, again = await put(keyed, "/v1/notifications/channels/hook", body)
    assert status == 200 and "secret" not in again  # the stored one is kept
    assert made["secret"] not in await (await keyed.get("/v1/notifications/channels/hook")).text()


async def test_without_a_secret_key_no_secret_is_stored(api: TestClient) -> None:
    body = {"target": {"type": "slack", "url": SLACK_URL}}
    status, problem = await put(api, "/v1/notifications/channels/slack", body)
    assert status == 409 and "CRONSTREAM_SECRET_KEY" in problem["detail"]
    assert SLACK_URL not in str(problem)
    assert (await api.get("/v1/notifications/channels/slack")).status == 404


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"type": "webhook", "url": "ftp://example.com/x"}, "target.url"),
        ({"type": "slack"}, "target.url"),
        (MAIL | {"to": ["not an address"]}, "target.to"),
        (MAIL | {"to": ["a@example.com"], "port": 0}, "target.port"),
        ({"type": "pager", "url": "http://127.0.0.1/"}, "target"),
        (
            {"type": "webhook", "url": "http://127.0.0.1/", "headers": {"x-a": "1"}},
            "target.headers",
        ),
        ({"type": "webhook", "url": "http://caf\u00e9.example/"}, "target.url"),
    ],
)
async def test_bad_channels_are_refused_naming_the_field(
    api: TestClient, target: dict[str, Any], field: str
) -> None:
    status, problem = await put(api, "/v1/notifications/channels/c", {"target": target})
    assert status == 422, problem
    assert problem["errors"][0]["field"].startswith(field)
    assert (await api.get("/v1/notifications/channels/c")).status == 404


async def test_a_channel_to_an_address_the_outbound_policy_refuses_is_refused(
    redis: Redis, settings: Settings
) -> None:
    strict = settings.with_overrides(allow_private_targets=False, secret_key=SECRET_KEY)
    client = TestClient(TestServer(create_app(strict, redis), host="127.0.0.1"))
    await client.start_server()
    try:
        hook = {"type": "webhook", "url": "http://169.254.169.254/latest"}
        status, problem = await put(client, "/v1/notifications/channels/c", {"target": hook})
        assert status == 422 and problem["errors"][0]["field"] == "target.url"
        status, problem = await put(
            client, "/v1/notifications/channels/m", {"target": MAIL | {"to": ["a@example.com"]}}
        )
        assert status == 422 and problem["errors"][0]["field"] == "target.host"
    finally:
        await client.close()


async def test_rules_name_existing_channels_and_are_read_back(keyed: TestClient) -> None:
    rule = {"on": "overlap_skipped", "channels": ["ops"], "threshold": 5, "window_s": 600}
    status, problem = await put(keyed, "/v1/notifications/rules/overlaps", rule)
    assert status == 409 and "'ops'" in problem["detail"]
    await put(
        keyed, "/v1/notifications/channels/ops", {"target": {"type": "slack", "url": SLACK_URL}}
    )
    status, view = await put(keyed, "/v1/notifications/rules/overlaps", rule)
    assert status == 201
    assert view["window_s"] == 600 and view["threshold"] == 5 and view["cooldown_s"] == 300
    status, view = await put(keyed, "/v1/notifications/rules/overlaps", rule | {"threshold": 2})
    assert status == 200 and view["threshold"] == 2
    status, problem = await put(keyed, "/v1/notifications/rules/r", rule | {"on": "run_exploded"})
    assert status == 422 and problem["errors"][0]["field"] == "on"
    assert (await keyed.delete("/v1/notifications/rules/overlaps")).status == 204
    assert (await keyed.get("/v1/notifications/rules/overlaps")).status == 404
    assert (await keyed.delete("/v1/notifications/rules/overlaps")).status == 404


def occurrence(n: int, at_ms: int, subject: str = "s1") -> Occurrence:
    return Occurrence(
        trigger=Trigger.OVERLAP_SKIPPED,
        ident=f"0:{at_ms}-{n}",
        subject=subject,
        at_ms=at_ms,
        schedule_id=subject,
    )


async def store_with_rule(
    redis: Redis, keys: Keyspace, rule: dict[str, Any]
) -> tuple[NotificationStore, Subscriber]:
    store = NotificationStore(redis, keys, SECRET_KEY)
    slack = ChannelConfig.model_validate({"target": {"type": "slack", "url": SLACK_URL}})
    await store.put_channel("ops", slack, 0)
    await store.put_rule("r", RuleConfig.model_validate(rule), 0)
    subscriber = Subscriber(redis, keys, store, "test")
    await subscriber.rules.fresh()
    return store, subscriber


async def test_overlap_skips_are_told_once_a_window_when_more_than_the_threshold(
    redis: Redis, keys: Keyspace
) -> None:
    rule = {"on": "overlap_skipped", "channels": ["ops"], "threshold": 3, "window_s": 600}
    _, subscriber = await store_with_rule(redis, keys, rule)
    window = 1_800_000_000_000 - 1_800_000_000_000 % 600_000

    outcomes = []
    for n in range(6):
        [admission] = await subscriber.occurred(occurrence(n, window + n * 1000))
        outcomes.append((admission.outcome, admission.count))
    [again] = await subscriber.occurred(occurrence(4, window + 4000))  # read twice
    [other] = await subscriber.occurred(occurrence(0, window + 1000, subject="s2"))
    [later] = await subscriber.occurred(occurrence(9, window + 600_000))

    assert outcomes == [
        ("counting", 1),
        ("counting", 2),
        ("counting", 3),
        ("told", 4),
        ("open", 5),
        ("open", 6),
    ]
    assert again.outcome == "duplicate"
    assert (other.outcome, other.count) == ("counting", 1)  # each schedule counts alone
    assert (later.outcome, later.count) == ("counting", 1)  # a new window counts afresh


@pytest.mark.parametrize(
    ("last", "at", "cooldown"),
    [
        (None, 1000, 5000),
        (1000, 5000, 5000),
        (1000, 6000, 5000),
        (10000, 6000, 5000),
        (10000, 4000, 5000),
    ],
)
async def test_the_store_cools_down_as_the_domain_says(
    redis: Redis, keys: Keyspace, last: int | None, at: int, cooldown: int
) -> None:
    rule = {"on": "fires_missed", "channels": ["ops"], "cooldown_s": cooldown // 1000}
    store, _ = await store_with_rule(redis, keys, rule)
    if last is not None:
        await redis.set(keys.notify("cooldown:r:s1"), last)
    config = RuleConfig.model_validate(rule)
    occ = Occurrence(Trigger.FIRES_MISSED, "0:1-0", "s1", at, schedule_id="s1")
    admission = await store.admit(incident_of("r", config, occ), config, [("ops", 30)], {})
    [decision] = admission.decisions
    assert (decision.reason == "cooldown") is in_cooldown(last, at, cooldown)


async def test_the_list_pages_newest_first_and_filters(
    redis: Redis, keys: Keyspace, keyed: TestClient
) -> None:
    rule = {"on": "fires_missed", "channels": ["ops"], "cooldown_s": 3600}
    _, subscriber = await store_with_rule(redis, keys, rule)
    for n in range(7):
        occ = Occurrence(Trigger.FIRES_MISSED, f"0:{n}-0", "s1", 1_000 + n, schedule_id="s1")
        await subscriber.occurred(occ)

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        page = await (await keyed.get("/v1/notifications", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 == len(set(seen))
    suppressed = await (await keyed.get("/v1/notifications?status=suppressed")).json()
    assert len(suppressed["items"]) == 6
    assert all(i["reason"] == "cooldown" for i in suppressed["items"])
    queued = await (await keyed.get("/v1/notifications?status=queued&rule=r")).json()
    [told] = queued["items"]
    assert told["schedule_id"] == "s1" and told["trigger"] == "fires_missed"
    assert (await keyed.get("/v1/notifications?status=lost")).status == 422
    assert (await keyed.get("/v1/notifications?cursor=nope")).status == 422


async def test_each_namespace_has_its_own_channels_rules_and_records(
    redis: Redis, keys: Keyspace, keyed: TestClient
) -> None:
    team = {"Cronstream-Namespace": "team"}
    slack = {"target": {"type": "slack", "url": SLACK_URL}}
    for headers in (team, {}):
        r = await keyed.put("/v1/notifications/channels/ops", json=slack, headers=headers)
        assert r.status == 201, await r.text()
        rule = {"on": "fires_missed", "channels": ["ops"], "schedule_id": "s1", "cooldown_s": 0}
        r = await keyed.put("/v1/notifications/rules/r", json=rule, headers=headers)
        assert r.status == 201, await r.text()
        view = await r.json()
        assert view["id"] == "r" and view["channels"] == ["ops"] and view["schedule_id"] == "s1"
    await keyed.delete("/v1/notifications/channels/ops")  # default's: team's stays
    channels = await (await keyed.get("/v1/notifications/channels", headers=team)).json()
    assert [c["id"] for c in channels["items"]] == ["ops"]
    assert (await keyed.get("/v1/notifications/channels/ops")).status == 404

    store = NotificationStore(redis, keys, SECRET_KEY)
    subscriber = Subscriber(redis, keys, store, "test")
    await subscriber.rules.fresh()
    for n, sid in enumerate(("team/s1", "s1", "other/s1")):
        occ = Occurrence(Trigger.FIRES_MISSED, f"0:{n}-0", sid, 1000 + n, schedule_id=sid)
        await subscriber.occurred(occ)

    told = await (await keyed.get("/v1/notifications", headers=team)).json()
    [record] = told["items"]
    assert (record["rule"], record["channel"], record["schedule_id"]) == ("r", "ops", "s1")
    assert record["summary"] == "cronstream: schedule s1 missed ? fire(s)"
    mine = await (await keyed.get("/v1/notifications")).json()
    assert [r["schedule_id"] for r in mine["items"]] == ["s1"]  # default's own, nobody else's
