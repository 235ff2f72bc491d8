"""``cronstream token``: create, list, revoke and generate, against a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from service.cli.main import main
from service.domain.tokens import Scope, check_token, token_hash, token_id
from service.store.keys import Keyspace
from service.store.tokens import Admission, TokenStore


@pytest.fixture
def prefix(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CLI pointed at the test Redis, under a key prefix of its own."""
    own = f"tok{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CRONSTREAM_KEY_PREFIX", own)
    return own


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def admit(redis_url: str, prefix: str, token: str) -> Any:
    async def go() -> Any:
        client = Redis.from_url(redis_url)
        try:
            return await TokenStore(client, Keyspace(prefix)).admit(token)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_create_prints_the_token_alone_once(
    capsys: pytest.CaptureFixture[str], prefix: str, redis_url: str
) -> None:
    code, out, err = run(
        capsys, "token", "create", "--scopes", "runs:read,events:read", "--name", "ci",
        "--expires", "90d", "--rate", "600/min", "--namespace", "team-a",
    )  # fmt: skip
    assert code == 0, err
    token = out.strip()
    assert out == token + "\n" and check_token(token) == token
    ident = token_id(token_hash(token))
    assert ident in err and "shown this once" in err and token not in err
    admitted = admit(redis_url, prefix, token)
    assert admitted.outcome is Admission.ALLOWED
    assert admitted.scopes == {Scope.RUNS_READ, Scope.EVENTS_READ} and admitted.limit == 600
    code, out, _ = run(capsys, "token", "list", "-o", "json")
    [row] = orjson.loads(out)
    assert (row["id"], row["name"], row["status"], row["rate"]) == (
        ident,
        "ci",
        "active",
        "600/min",
    )
    assert row["scopes"] == ["events:read", "runs:read"] and row["namespaces"] == ["team-a"]
    assert row["expires_at"] and row["last_used_at"] and token not in out


def test_revoke_by_id_or_by_token(
    capsys: pytest.CaptureFixture[str], prefix: str, redis_url: str
) -> None:
    tokens = [run(capsys, "token", "create", "--scopes", "admin")[1].strip() for _ in range(2)]
    first = token_id(token_hash(tokens[0]))
    code, out, _ = run(capsys, "token", "revoke", first)
    assert code == 0 and f"token {first} revoked" in out
    code, out, _ = run(capsys, "token", "revoke", tokens[1])
    assert code == 0 and "revoked" in out
    code, out, _ = run(capsys, "token", "revoke", first)
    assert code == 0 and "already revoked" in out
    assert admit(redis_url, prefix, tokens[0]).outcome is Admission.REVOKED
    code, out, _ = run(capsys, "token", "list")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "SCOPES"]
    assert [line.split()[-3] for line in lines[1:]] == ["revoked", "revoked"]
    code, _, err = run(capsys, "token", "revoke", "0123456789abcdef")
    assert code == 1 and "no token" in err


def test_create_refuses_what_it_cannot_keep(
    capsys: pytest.CaptureFixture[str], prefix: str
) -> None:
    for args in (
        ["--scopes", "runs:reed"],
        ["--scopes", "admin", "--rate", "lots"],
        ["--scopes", "admin", "--expires", "soon"],
        ["--scopes", "admin", "--namespace", "a b"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["token", "create", *args])
        assert exit_.value.code == 2
        assert "token create: error" in capsys.readouterr().err
    code, out, _ = run(capsys, "token", "list", "-o", "json")
    assert code == 0 and orjson.loads(out) == []


def test_generate_stores_nothing(capsys: pytest.CaptureFixture[str], prefix: str) -> None:
    code, out, _ = run(capsys, "token", "generate")
    assert code == 0 and check_token(out.strip())
    assert run(capsys, "token", "generate")[1] != out
    assert orjson.loads(run(capsys, "token", "list", "-o", "json")[1]) == []
