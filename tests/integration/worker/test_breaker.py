"""The circuit breaker on real Redis: closed -> open -> half-open -> closed or open again."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from service.clock import FixedClock
from service.domain.timeutil import parse_instant, to_rfc3339
from service.store.keys import Keyspace
from service.worker.breaker import CircuitBreaker, breaker_host

NOW_MS = 1_768_478_400_000
HOST = "hooks.example.com"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW_MS)


@pytest.fixture
def breaker(redis: Redis, keys: Keyspace, clock: FixedClock) -> CircuitBreaker:
    return CircuitBreaker(redis, keys, threshold=3, cooldown_ms=10_000, clock=clock)


async def fail(breaker: CircuitBreaker, times: int, host: str = HOST) -> None:
    for _ in range(times):
        await breaker.record(host, ok=False)


async def open_and_cool(breaker: CircuitBreaker, clock: FixedClock) -> None:
    await fail(breaker, 3)
    clock.advance(10_000)


async def test_an_unknown_host_is_closed_and_allowed(breaker: CircuitBreaker) -> None:
    assert await breaker.allow(HOST)
    assert await breaker.state(HOST) == {
        "host": HOST,
        "state": "closed",
        "failures": 0,
        "opened_at": None,
    }


async def test_opens_after_threshold_consecutive_failures(breaker: CircuitBreaker) -> None:
    await fail(breaker, 2)
    assert await breaker.allow(HOST)
    assert (await breaker.state(HOST))["state"] == "closed"

    await fail(breaker, 1)

    assert await breaker.state(HOST) == {
        "host": HOST,
        "state": "open",
        "failures": 3,
        "opened_at": to_rfc3339(NOW_MS),
    }
    assert not await breaker.allow(HOST)


async def test_a_success_resets_the_count(breaker: CircuitBreaker) -> None:
    await fail(breaker, 2)
    await breaker.record(HOST, ok=True)
    await fail(breaker, 2)
    assert (await breaker.state(HOST))["state"] == "closed"


async def test_denies_until_the_cool_down_is_over(
    breaker: CircuitBreaker, clock: FixedClock
) -> None:
    await fail(breaker, 3)
    clock.advance(9_999)
    assert not await breaker.allow(HOST)
    await fail(breaker, 1)  # a late failure does not restart the cool-down
    clock.advance(1)
    assert await breaker.allow(HOST)
    assert (await breaker.state(HOST))["state"] == "half_open"


async def test_half_open_lets_exactly_one_probe_through(
    breaker: CircuitBreaker, clock: FixedClock
) -> None:
    await open_and_cool(breaker, clock)

    allowed = await asyncio.gather(*(breaker.allow(HOST) for _ in range(10)))

    assert allowed.count(True) == 1
    assert not await breaker.allow(HOST)  # still waiting for the probe


async def test_half_open_is_shared_by_separate_clients(
    redis: Redis, redis_url: str, keys: Keyspace, clock: FixedClock
) -> None:
    clients = [Redis.from_url(redis_url) for _ in range(5)]
    try:
        breakers = [
            CircuitBreaker(c, keys, threshold=3, cooldown_ms=10_000, clock=clock) for c in clients
        ]
        await open_and_cool(breakers[0], clock)
        allowed = await asyncio.gather(*(b.allow(HOST) for b in breakers for _ in range(4)))
        assert allowed.count(True) == 1
    finally:
        for client in clients:
            await client.aclose()


async def test_a_successful_probe_closes_the_breaker(
    breaker: CircuitBreaker, clock: FixedClock
) -> None:
    await open_and_cool(breaker, clock)
    assert await breaker.allow(HOST)

    await breaker.record(HOST, ok=True)

    assert await breaker.state(HOST) == {
        "host": HOST,
        "state": "closed",
        "failures": 0,
        "opened_at": None,
    }
    assert all(await asyncio.gather(*(breaker.allow(HOST) for _ in range(5))))


async def test_a_failed_probe_opens_it_again_for_a_new_cool_down(
    breaker: CircuitBreaker, clock: FixedClock
) -> None:
    await open_and_cool(breaker, clock)
    assert await breaker.allow(HOST)

    await breaker.record(HOST, ok=False)

    state = await breaker.state(HOST)
    assert (state["state"], state["opened_at"]) == ("open", to_rfc3339(NOW_MS + 10_000))
    clock.advance(9_999)
    assert not await breaker.allow(HOST)
    clock.advance(1)
    assert await breaker.allow(HOST)


async def test_a_lost_probe_lets_another_caller_probe_after_the_probe_timeout(
    breaker: CircuitBreaker, clock: FixedClock
) -> None:
    await open_and_cool(breaker, clock)
    assert await breaker.allow(HOST)  # this probe's worker dies and never reports
    clock.advance(9_999)
    assert not await breaker.allow(HOST)
    clock.advance(1)
    assert await breaker.allow(HOST)
    assert not await breaker.allow(HOST)


async def test_hosts_are_independent(breaker: CircuitBreaker) -> None:
    await fail(breaker, 3, host="a.example")
    assert not await breaker.allow("a.example")
    assert await breaker.allow("b.example")


async def test_states_lists_every_recorded_host(breaker: CircuitBreaker) -> None:
    await fail(breaker, 3, host="b.example:8443")
    await breaker.record("a.example", ok=True)

    assert await breaker.states() == [
        {"host": "a.example", "state": "closed", "failures": 0, "opened_at": None},
        {"host": "b.example:8443", "state": "open", "failures": 3, "opened_at": to_rfc3339(NOW_MS)},
    ]


async def test_without_a_clock_redis_time_is_used(redis: Redis, keys: Keyspace) -> None:
    breaker = CircuitBreaker(redis, keys, threshold=1, cooldown_ms=60_000)
    server_ms = int((await redis.time())[0]) * 1000
    await breaker.record(HOST, ok=False)
    assert not await breaker.allow(HOST)
    state = await breaker.state(HOST)
    assert state["state"] == "open"
    assert 0 <= parse_instant(state["opened_at"]) - server_ms < 60_000


async def test_a_zero_cool_down_probes_at_once(redis: Redis, keys: Keyspace) -> None:
    breaker = CircuitBreaker(redis, keys, threshold=1, cooldown_ms=0, clock=FixedClock(NOW_MS))
    await breaker.record(HOST, ok=False)
    assert await breaker.allow(HOST)


def test_invalid_settings_are_refused(redis: Redis, keys: Keyspace) -> None:
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker(redis, keys, threshold=0)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://Hooks.Example.com/a?b=1", "hooks.example.com"),
        ("http://127.0.0.1:8080/hook", "127.0.0.1:8080"),
        ("http://[::1]:9000/x", "[::1]:9000"),
        ("https://user:pw@example.com/", "example.com"),
    ],
)
def test_breaker_host_of_a_url(url: str, host: str) -> None:
    assert breaker_host(url) == host
