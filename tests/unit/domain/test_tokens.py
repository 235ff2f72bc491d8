"""Tokens: their format and checksum, scopes, rates and status (pure, no Redis)."""

from __future__ import annotations

import re

import pytest

from service.config import INSECURE_HOST, Settings, is_loopback
from service.domain import tokens
from service.domain.tokens import (
    ALPHABET,
    BODY_LENGTH,
    DEFAULT_RATE,
    PREFIX,
    TOKEN_LENGTH,
    MalformedToken,
    Rate,
    Scope,
    TokenRecord,
    TokenStatus,
    allows,
    bearer_token,
    check_token,
    parse_scopes,
    token_from_body,
    token_hash,
    token_id,
)
from service.server import refuse_open_exposure

BODY = "0123456789abcdefghijABCDEFGHIJ"
TOKEN = token_from_body(BODY)


def test_a_token_is_prefixed_random_and_checksummed() -> None:
    assert re.fullmatch(r"cs_[0-9A-Za-z]{36}", TOKEN)
    assert len(TOKEN) == TOKEN_LENGTH and TOKEN.startswith(PREFIX + BODY)
    assert check_token(TOKEN) == TOKEN
    assert token_from_body("1" + BODY[1:]) != TOKEN


def test_every_single_character_typo_fails_the_checksum() -> None:
    for i in range(len(PREFIX), TOKEN_LENGTH):
        for letter in ALPHABET:
            if letter == TOKEN[i]:
                continue
            typo = TOKEN[:i] + letter + TOKEN[i + 1 :]
            with pytest.raises(MalformedToken, match="checksum"):
                check_token(typo)


def test_two_swapped_characters_fail_the_checksum() -> None:
    for i in range(len(PREFIX), TOKEN_LENGTH - 1):
        if TOKEN[i] != TOKEN[i + 1]:
            swapped = TOKEN[:i] + TOKEN[i + 1] + TOKEN[i] + TOKEN[i + 2 :]
            with pytest.raises(MalformedToken):
                check_token(swapped)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "starts with"),
        ("ghp_" + BODY + "abcdef", "starts with"),
        (TOKEN[:-1], "characters"),
        (TOKEN + "x", "characters"),
        (TOKEN[:10] + "-" + TOKEN[11:], "base62"),
    ],
)
def test_malformed_tokens_say_why(text: str, why: str) -> None:
    with pytest.raises(MalformedToken, match=why):
        check_token(text)


def test_token_bodies_are_checked() -> None:
    for body in ("short", BODY + "x", BODY[:-1] + "-"):
        with pytest.raises(ValueError):
            token_from_body(body)
    assert len(BODY) == BODY_LENGTH


def test_the_bearer_header() -> None:
    assert bearer_token(f"Bearer {TOKEN}") == TOKEN
    assert bearer_token(f"bearer   {TOKEN} ") == TOKEN
    for header in (None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", TOKEN):
        with pytest.raises(MalformedToken):
            bearer_token(header)


def test_only_the_hash_is_kept_and_the_id_is_its_start() -> None:
    digest = token_hash(TOKEN)
    assert re.fullmatch(r"[0-9a-f]{64}", digest) and TOKEN not in digest
    assert token_id(digest) == digest[:16]


def test_scopes_parse_and_admin_implies_every_one() -> None:
    assert parse_scopes("runs:read, schedules:write") == {Scope.RUNS_READ, Scope.SCHEDULES_WRITE}
    for bad in ("runs:rea", "", " , "):
        with pytest.raises(ValueError):
            parse_scopes(bad)
    for scope in Scope:
        assert allows({Scope.ADMIN}, scope)
        assert allows({scope}, scope)
        assert not allows(set(Scope) - {scope, Scope.ADMIN}, scope)


def test_rates() -> None:
    assert Rate.parse("600/min") == Rate(600, 60_000)
    assert Rate.parse("10 / s") == Rate(10, 1000)
    assert Rate.parse("5000/hour") == Rate(5000, 3_600_000)
    assert str(Rate.parse("600/minute")) == "600/min" and str(DEFAULT_RATE) == "100/min"
    for bad in ("600", "0/min", "10/fortnight", "-1/s", "1e3/s"):
        with pytest.raises(ValueError, match="N/s"):
            Rate.parse(bad)


def test_a_token_is_revoked_before_it_is_expired_and_expired_at_its_instant() -> None:
    record = TokenRecord("id", "n", frozenset({Scope.ADMIN}), ("default",), DEFAULT_RATE, 0, 1000)
    assert record.status(999) is TokenStatus.ACTIVE
    assert record.status(1000) is TokenStatus.EXPIRED
    revoked = TokenRecord("id", "n", frozenset(), ("default",), DEFAULT_RATE, 0, 1000, 500)
    assert revoked.status(0) is TokenStatus.REVOKED and revoked.status(2000) is TokenStatus.REVOKED
    forever = TokenRecord("id", "n", frozenset(), ("default",), DEFAULT_RATE, 0)
    assert forever.status(10**15) is TokenStatus.ACTIVE


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("192.168.1.10", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_an_open_api_listens_on_loopback_only(host: str, loopback: bool) -> None:
    """A pure check of the address: nothing is bound or connected."""
    assert is_loopback(host) is loopback
    settings = Settings(host=host, auth=False)
    if loopback:
        refuse_open_exposure(settings)
    else:
        with pytest.raises(ValueError, match=re.escape("127.0.0.1 only")):
            refuse_open_exposure(settings)
    refuse_open_exposure(Settings(host=host, auth=True))  # with tokens, any address


def test_the_admin_token_stays_out_of_settings_repr() -> None:
    settings = Settings.from_env({"CRONSTREAM_ADMIN_TOKEN": TOKEN, "CRONSTREAM_METRICS_AUTH": "1"})
    assert settings.admin_token == TOKEN and TOKEN not in repr(settings)
    assert settings.metrics_auth and settings.auth
    assert Settings.from_env({"CRONSTREAM_RATE_LIMIT": "7/s"}).rate_limit == Rate(7, 1000)
    with pytest.raises(ValueError, match="CRONSTREAM_RATE_LIMIT"):
        Settings.from_env({"CRONSTREAM_RATE_LIMIT": "lots"})
    assert "{host}" in INSECURE_HOST


def test_a_bearer_header_is_checked_once_per_value(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []

    def counting(text: str) -> str:
        checked.append(text)
        return check_token(text)

    monkeypatch.setattr(tokens, "check_token", counting)
    fresh = token_from_body("Z" * BODY_LENGTH)
    assert [bearer_token(f"Bearer {fresh}") for _ in range(3)] == [fresh] * 3
    assert checked == [fresh]
    typo = fresh[:-1] + ("A" if fresh[-1] != "A" else "B")
    for _ in range(2):  # a refused header is never kept: it is refused every time
        with pytest.raises(MalformedToken):
            bearer_token(f"Bearer {typo}")
    padded = f"Bearer {' ' * tokens.CACHED_HEADER_LENGTH}{fresh}"  # too long to be kept
    assert [bearer_token(padded) for _ in range(2)] == [fresh] * 2
    assert checked == [fresh, typo, typo, fresh, fresh]
