"""The version decision and feature detection, as pure functions."""

from __future__ import annotations

import pytest

from service.errors import CronstreamError, RedisVersionUnsupported
from service.store.features import (
    ServerFeatures,
    decide_features,
    parse_version,
    supported_version,
)


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("6.2.14", (6, 2, 14)),
        ("7.0.15", (7, 0, 15)),
        ("7.2", (7, 2, 0)),
        (" 7.4.1\n", (7, 4, 1)),
        ("255.255.255", (255, 255, 255)),  # a build from Redis's unstable branch
        ("", None),
        ("7", None),
        ("7.0.x", None),
        ("v7.0.0", None),
        ("7.0.0-rc1", None),
    ],
)
def test_parse_version(text: str, version: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize("text", ["6.2.0", "6.2.14", "7.0.15", "7.2.4", "8.0.1"])
def test_6_2_and_newer_are_supported(text: str) -> None:
    assert supported_version(text) == parse_version(text)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("6.0.16", "is version 6.0.16;"),
        ("6.1.99", "is version 6.1.99;"),
        ("5.0.7", "is version 5.0.7;"),
        ("", "is of unknown version '';"),
        ("unknown", "is of unknown version 'unknown';"),
    ],
)
def test_older_or_unreadable_versions_are_refused_by_name(text: str, named: str) -> None:
    with pytest.raises(RedisVersionUnsupported) as raised:
        supported_version(text)
    assert isinstance(raised.value, CronstreamError)
    message = str(raised.value)
    assert f"the Redis server {named} cronstream needs Redis 6.2 or newer" in message


def test_6_2_has_none_of_the_optional_features() -> None:
    assert decide_features((6, 2, 14), set()) == ServerFeatures(
        version=(6, 2, 14), multipart_aof=False, functions=False, waitaof=False
    )


def test_7_0_has_multipart_aof_and_functions_but_no_waitaof() -> None:
    got = decide_features((7, 0, 15), {"function"})
    assert (got.multipart_aof, got.functions, got.waitaof) == (True, True, False)
    assert got.describe() == "redis 7.0.15: multi-part AOF, functions, no WAITAOF"


def test_commands_count_not_the_version_number() -> None:
    # a 7.2 server with WAITAOF renamed away has none; a fork reporting 6.2 with it has it
    renamed = decide_features((7, 2, 4), {"FUNCTION"})
    assert renamed.functions and not renamed.waitaof
    fork = decide_features((6, 2, 14), {"WAITAOF"})
    assert fork.waitaof and not fork.multipart_aof
    assert fork.describe() == "redis 6.2.14: WAITAOF, no multi-part AOF, no functions"
