"""The stored secrets' encryption and script: sealed to their place, safe to run twice,
bounded, and expiring on Redis's clock (or a given one)."""

from __future__ import annotations

import base64

import pytest
from redis.asyncio import Redis

from service.store.keys import Keyspace
from service.store.secrets import (
    MAX_LIVE,
    SecretBox,
    SecretUnreadable,
    SigningKeyMissing,
    SigningSecretNotFound,
    SigningSecrets,
    SigningSecretsFull,
    generate_key,
    parse_key,
    place_of,
)

KEY = generate_key()
NOW = 1_800_000_000_000


def test_a_key_is_the_base64_of_32_bytes_in_either_alphabet() -> None:
    raw = bytes(range(250, 256)) * 5 + b"\xfb\xff"
    assert parse_key(base64.b64encode(raw).decode()) == raw
    assert parse_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match="CRONSTREAM_SECRET_KEY") as caught:
            parse_key(bad)
        assert bad not in str(caught.value)


def test_a_sealed_secret_opens_only_with_its_key_and_in_its_place() -> None:
    box = SecretBox.from_text(KEY)
    sealed = box.seal("whsec_abc", place_of("w", "sec_1"))
    assert "whsec_abc" not in sealed and "abc" not in sealed
    assert box.open(sealed, place_of("w", "sec_1")) == "whsec_abc"
    with pytest.raises(SecretUnreadable):
        box.open(sealed, place_of("other", "sec_1"))  # copied to another workflow
    with pytest.raises(SecretUnreadable):
        SecretBox.from_text(generate_key()).open(sealed, place_of("w", "sec_1"))
    middle = len(sealed) // 2  # a whole byte's bits, not the padding's
    flipped = sealed[:middle] + ("A" if sealed[middle] != "A" else "B") + sealed[middle + 1 :]
    with pytest.raises(SecretUnreadable):
        box.open(flipped, place_of("w", "sec_1"))
    assert box.seal("whsec_abc", place_of("w", "sec_1")) != sealed  # a fresh nonce each time


@pytest.mark.parametrize("text", [None, "", "bad key"])
def test_no_usable_key_is_a_conflict_that_says_so(text: str | None) -> None:
    with pytest.raises(SigningKeyMissing, match="CRONSTREAM_SECRET_KEY"):
        SecretBox.from_text(text)


async def test_secrets_live_until_their_grace_ends_and_then_are_dropped(
    redis: Redis, keys: Keyspace
) -> None:
    store = SigningSecrets(redis, keys, KEY)
    first = await store.create("w", now_ms=NOW)
    second = await store.rotate("w", grace_ms=1000, now_ms=NOW + 10)
    listed = await store.live("w", now_ms=NOW + 500)
    assert [(s.id, s.expires_ms) for s in listed] == [(first.id, NOW + 1010), (second.id, None)]
    assert await store.signing_secrets("w", now_ms=NOW + 500) == [second.secret, first.secret]
    assert await store.signing_secrets("w", now_ms=NOW + 1010) == [second.secret]
    third = await store.rotate("w", grace_ms=0, now_ms=NOW + 2000)  # drops the expired one
    kept = set(await redis.hgetall(keys.signing_secrets(0, "w")))
    assert kept == {second.id.encode(), third.id.encode()}


async def test_a_repeated_call_changes_nothing(redis: Redis, keys: Keyspace) -> None:
    store = SigningSecrets(redis, keys, KEY)
    await store.create("w", now_ms=NOW)
    sealed = SecretBox.from_text(KEY).seal("whsec_x", place_of("w", "sec_0123456789abcdef"))
    call = ["rotate", NOW + 5, "sec_0123456789abcdef", sealed, MAX_LIVE, 60_000]
    first = await store._call("w", *call)
    before = await redis.hgetall(keys.signing_secrets(0, "w"))
    again = await store._call("w", "rotate", NOW + 9, *call[2:])  # the client's retry
    assert [first[0], again[0]] == [b"made", b"exists"]
    assert await redis.hgetall(keys.signing_secrets(0, "w")) == before


async def test_live_secrets_are_bounded_and_revoke_ends_one(redis: Redis, keys: Keyspace) -> None:
    store = SigningSecrets(redis, keys, KEY)
    made = [await store.create("w")]
    with pytest.raises(SigningSecretsFull, match="rotate"):
        await store.create("w")
    made += [await store.rotate("w") for _ in range(MAX_LIVE - 1)]
    with pytest.raises(SigningSecretsFull, match="revoke one first"):
        await store.rotate("w")
    await store.revoke("w", made[0].id)
    with pytest.raises(SigningSecretNotFound):
        await store.revoke("w", made[0].id)
    assert {s.id for s in await store.live("w")} == {m.id for m in made[1:]}
    assert await store.live("other") == []


async def test_without_a_key_nothing_is_written(redis: Redis, keys: Keyspace) -> None:
    with pytest.raises(SigningKeyMissing):
        await SigningSecrets(redis, keys, "").create("w")
    assert await redis.exists(keys.signing_secrets(0, "w")) == 0
