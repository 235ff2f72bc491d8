"""tokens.lua against a real redis-server: create, admit (the shared bucket), revoke, list."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from service.domain.tokens import Rate, Scope, TokenStatus, token_hash, token_id
from service.store.keys import Keyspace
from service.store.tokens import LEASE_S, Admission, Ask, NewToken, TokenStore, new_token

KEYS = Keyspace()
T0 = 1_768_478_400_000
READER = NewToken("reader", frozenset({Scope.RUNS_READ}), Rate(3, 60_000))


async def everything_stored(redis: Redis) -> bytes:
    """Every key and value in Redis (tokens make hashes and a sorted set only)."""
    out = b""
    async for key in redis.scan_iter(count=1000):
        hashed = await redis.type(key) == b"hash"
        value = await redis.hgetall(key) if hashed else await redis.zrange(key, 0, -1)
        out += key + repr(value).encode()
    return out


async def test_only_the_hash_is_stored_under_the_id(redis: Redis) -> None:
    store = TokenStore(redis, KEYS)
    token = new_token()
    created = await store.create(token, READER, now_ms=T0)
    assert created is not None and created.new
    assert created.id == token_id(token_hash(token)) and created.expires_ms is None
    record = await redis.hgetall(KEYS.token(created.id))
    assert record[b"hash"] == token_hash(token).encode()
    assert token.encode() not in await everything_stored(redis)
    assert await redis.zrange(KEYS.tokens, 0, -1) == [created.id.encode()]


async def test_a_repeated_create_is_the_same_token(redis: Redis) -> None:
    store = TokenStore(redis, KEYS)
    token = new_token()
    first = await store.create(token, READER, now_ms=T0)
    again = await store.create(token, READER, now_ms=T0 + 5)
    assert first is not None and again is not None and not again.new
    assert (again.id, again.created_ms) == (first.id, T0)
    assert await store.count() == 1


async def test_the_first_token_is_made_only_while_none_exists(redis: Redis) -> None:
    store = TokenStore(redis, KEYS)
    first = new_token()
    made = await store.create(first, READER, first=True)
    assert made is not None and made.new
    repeat = await store.create(first, READER, first=True)  # the client's retry of it
    assert repeat is not None and repeat.id == made.id
    assert await store.create(new_token(), READER, first=True) is None
    assert await store.count() == 1


async def test_the_bucket_refills_evenly_and_takes_nothing_when_empty(redis: Redis) -> None:
    store = TokenStore(redis, KEYS)
    token = new_token()
    await store.create(token, READER, now_ms=T0)
    seen = [await store.admit(token, T0) for _ in range(4)]
    assert [a.outcome for a in seen] == [Admission.ALLOWED] * 3 + [Admission.LIMITED]
    assert [a.remaining for a in seen] == [2, 1, 0, 0]
    assert seen[-1].retry_ms == 20_000 and seen[-1].reset_ms == 60_000
    assert seen[0].scopes == {Scope.RUNS_READ} and seen[0].limit == 3
    assert (await store.admit(token, T0 + 19_999)).outcome is Admission.LIMITED
    later = await store.admit(token, T0 + 20_000)
    assert (later.outcome, later.remaining) == (Admission.ALLOWED, 0)
    full = await store.admit(token, T0 + 10 * 60_000)  # never more than the limit
    assert (full.outcome, full.remaining) == (Admission.ALLOWED, 2)


async def test_two_clients_share_one_bucket(redis: Redis, redis_url: str) -> None:
    other = Redis.from_url(redis_url)
    try:
        token = new_token()
        await TokenStore(redis, KEYS).create(token, READER)
        stores = [TokenStore(redis, KEYS), TokenStore(other, KEYS)]
        outcomes = [(await stores[i % 2].admit(token)).outcome for i in range(4)]
    finally:
        await other.aclose()
    assert outcomes == [Admission.ALLOWED] * 3 + [Admission.LIMITED]


async def test_expiry_revocation_and_unknown_tokens(redis: Redis) -> None:
    store = TokenStore(redis, KEYS)
    token = new_token()
    spec = NewToken("short", frozenset({Scope.ADMIN}), Rate(100, 60_000), lifetime_ms=1000)
    created = await store.create(token, spec, now_ms=T0)
    assert created is not None and created.expires_ms == T0 + 1000
    assert (await store.admit(token, T0 + 999)).outcome is Admission.ALLOWED
    assert (await store.admit(token, T0 + 1000)).outcome is Admission.EXPIRED
    assert (await store.revoke(created.id, now_ms=T0 + 5)) == ("revoked", T0 + 5)
    assert (await store.revoke(created.id)) == ("already", T0 + 5)
    assert (await store.admit(token, T0)).outcome is Admission.REVOKED
    assert (await store.admit(new_token())).outcome is Admission.UNKNOWN
    for ident in (token_id(token_hash(new_token())), "*", "../x", ""):
        assert (await store.revoke(ident)) == ("unknown", None)


async def test_the_listing_tells_each_token_apart(redis: Redis) -> None:
    store = TokenStore(redis, KEYS)
    tokens = [new_token() for _ in range(3)]
    specs: list[Any] = [
        READER,
        NewToken("ops", frozenset({Scope.ADMIN}), Rate(600, 60_000), 3_600_000, ("a", "b")),
        READER,
    ]
    for i, (token, spec) in enumerate(zip(tokens, specs, strict=True)):
        await store.create(token, spec, now_ms=T0 + i)
    await store.admit(tokens[0], T0 + 10)
    created = await store.create(tokens[2], READER)
    assert created is not None
    await store.revoke(created.id, now_ms=T0 + 20)
    listed = await store.list()
    assert [r.name for r in listed] == ["reader", "ops", "reader"]
    assert [r.status(T0 + 3_600_001) for r in listed] == [
        TokenStatus.ACTIVE,
        TokenStatus.EXPIRED,
        TokenStatus.REVOKED,
    ]
    assert listed[0].last_used_ms == T0 + 10 and listed[1].last_used_ms is None
    assert listed[1].namespaces == ("a", "b") and listed[0].namespaces == ("default",)
    assert listed[1].rate == Rate(600, 60_000) and listed[1].expires_ms == T0 + 1 + 3_600_000


class CountingPipelines(TokenStore):
    """The real store, counting the pipelines its admissions travel in."""

    pipelines = 0

    async def _admit_all(self, batch: list[Ask]) -> list[list[Any]]:
        self.pipelines += 1
        return await super()._admit_all(batch)


async def test_concurrent_admissions_travel_together_and_each_counts(redis: Redis) -> None:
    store = CountingPipelines(redis, KEYS)
    token = new_token()
    await store.create(token, NewToken("burst", frozenset({Scope.RUNS_READ}), Rate(5, 60_000)))
    seen = await asyncio.gather(*(store.admit(token, T0) for _ in range(12)))
    assert [a.outcome for a in seen] == [Admission.ALLOWED] * 5 + [Admission.LIMITED] * 7
    assert [a.remaining for a in seen[:5]] == [4, 3, 2, 1, 0]
    assert 1 <= store.pipelines < 12
    await store.aclose()


async def test_a_server_that_lost_the_script_gets_it_again(redis: Redis) -> None:
    store = TokenStore(redis, KEYS)
    token = new_token()
    await store.create(token, READER, now_ms=T0)
    await redis.script_flush()
    assert (await store.admit(token, T0)).outcome is Admission.ALLOWED
    assert (await store.admit(token, T0)).remaining == 1  # counted once each


async def test_a_lease_spares_calls_and_tells_what_is_left(redis: Redis) -> None:
    store = CountingPipelines(redis, KEYS)
    token = new_token()
    await store.create(token, NewToken("busy", frozenset({Scope.RUNS_READ}), Rate(10**6, 60_000)))
    seen = [await store.admit(token, T0) for _ in range(200)]
    assert all(a.outcome is Admission.ALLOWED for a in seen)
    assert [a.remaining for a in seen] == [10**6 - 1 - i for i in range(200)]
    assert store.pipelines <= 10  # leases of 1, 2, 4, ... permits, not a call per request
    level = float(await redis.hget(KEYS.token(token_id(token_hash(token))), "level") or 0)
    assert 10**6 - 2 * 200 <= level <= 10**6 - 200  # every admitted request was taken


async def test_leasing_processes_admit_no_more_than_the_bucket(
    redis: Redis, redis_url: str
) -> None:
    other = Redis.from_url(redis_url)
    try:
        token = new_token()
        await TokenStore(redis, KEYS).create(token, NewToken("x", frozenset(), Rate(100, 60_000)))
        stores = [TokenStore(redis, KEYS), TokenStore(other, KEYS)]
        seen = [(await stores[i % 2].admit(token, T0)).outcome for i in range(160)]
    finally:
        await other.aclose()
    allowed = [i for i, outcome in enumerate(seen) if outcome is Admission.ALLOWED]
    assert len(allowed) == 100 and {i % 2 for i in allowed} == {0, 1}
    assert allowed[-1] < 110  # the last leased permits are spent, not lost


async def test_permits_a_lease_did_not_spend_go_back_to_the_bucket(redis: Redis) -> None:
    clock = [0.0]
    store = TokenStore(redis, KEYS, monotonic=lambda: clock[0])
    token = new_token()
    await store.create(token, NewToken("x", frozenset({Scope.ADMIN}), Rate(100, 60_000)))
    for _ in range(4):  # leases of 1, 2 then 4 permits: 3 of the last are left
        assert (await store.admit(token, T0)).outcome is Admission.ALLOWED
    key = KEYS.token(token_id(token_hash(token)))
    assert float(await redis.hget(key, "level") or 0) == 93
    clock[0] += LEASE_S  # the lease's time is up
    after = await store.admit(token, T0)  # gives the 3 back and leases 1 (what was used)
    assert (after.outcome, after.remaining) == (Admission.ALLOWED, 95)
    assert float(await redis.hget(key, "level") or 0) == 95


async def test_a_revocation_is_seen_within_a_lease(redis: Redis) -> None:
    store = TokenStore(redis, KEYS)
    token = new_token()
    await store.create(token, NewToken("x", frozenset({Scope.ADMIN}), Rate(10**6, 60_000)))
    for _ in range(3):
        assert (await store.admit(token)).outcome is Admission.ALLOWED
    assert (await TokenStore(redis, KEYS).revoke(token_id(token_hash(token))))[0] == "revoked"
    revoked_at = time.monotonic()
    while (await store.admit(token)).outcome is Admission.ALLOWED:
        assert time.monotonic() - revoked_at < LEASE_S + 0.5, "still admitted past its lease"
        await asyncio.sleep(0.01)
    assert (await store.admit(token)).outcome is Admission.REVOKED
    await store.aclose()


async def test_a_leased_permit_is_spent_without_awaiting_redis(redis: Redis) -> None:
    clock = [0.0]
    store = TokenStore(redis, KEYS, monotonic=lambda: clock[0])
    token = new_token()
    await store.create(token, NewToken("x", frozenset({Scope.ADMIN}), Rate(100, 60_000)))
    assert store.spend(token, T0) is None  # nothing leased: only admit can tell
    for _ in range(2):  # leases of 1 then 2 permits: 1 of the last is left
        assert (await store.admit(token, T0)).outcome is Admission.ALLOWED
    key = KEYS.token(token_id(token_hash(token)))
    spent = store.spend(token, T0)
    assert spent is not None and (spent.outcome, spent.remaining) == (Admission.ALLOWED, 97)
    assert float(await redis.hget(key, "level") or 0) == 97  # taken at the lease, not now
    assert store.spend(token, T0) is None  # the lease is spent
    assert (await store.admit(token, T0)).outcome is Admission.ALLOWED
    clock[0] += LEASE_S  # a lease outlives its time in no process
    assert store.spend(token, T0) is None
