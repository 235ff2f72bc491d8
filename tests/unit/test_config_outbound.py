"""The two outbound settings, as the environment gives them to ``serve`` and workers."""

from __future__ import annotations

import pytest

from service.config import Settings, outbound_policy_from_env
from service.domain.addresses import PUBLIC_ONLY


def test_by_default_deliveries_reach_public_addresses_only() -> None:
    settings = Settings.from_env({})
    assert (settings.allow_private_targets, settings.target_allowlist) == (False, ())
    assert settings.outbound_policy() == PUBLIC_ONLY == Settings().outbound_policy()
    assert outbound_policy_from_env({}) == PUBLIC_ONLY


@pytest.mark.parametrize(("raw", "allowed"), [("1", True), ("true", True), ("0", False)])
def test_allow_private_targets(raw: str, allowed: bool) -> None:
    env = {"CRONSTREAM_ALLOW_PRIVATE_TARGETS": raw}
    assert Settings.from_env(env).allow_private_targets is allowed
    assert outbound_policy_from_env(env).allow_private is allowed


def test_the_allowlist_takes_cidrs_addresses_and_hosts() -> None:
    env = {"CRONSTREAM_TARGET_ALLOWLIST": " 127.0.0.1/32, internal.example ,,10.0.0.7"}
    settings = Settings.from_env(env)
    assert settings.target_allowlist == ("127.0.0.1/32", "internal.example", "10.0.0.7")
    policy = settings.outbound_policy()
    assert policy == outbound_policy_from_env(env)
    assert policy.check("127.0.0.1", "x") is None and policy.check("10.0.0.7", "x") is None
    assert policy.check("10.9.9.9", "internal.example") is None
    assert policy.check("127.0.0.2", "x") is not None


@pytest.mark.parametrize(
    ("name", "raw", "said"),
    [
        ("CRONSTREAM_ALLOW_PRIVATE_TARGETS", "maybe", "must be 1 or 0"),
        ("CRONSTREAM_TARGET_ALLOWLIST", "10.0.0.0/8,*.corp", "'*.corp' is neither"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, raw: str, said: str) -> None:
    with pytest.raises(ValueError) as err:
        Settings.from_env({name: raw})
    assert str(err.value).startswith(name) and said in str(err.value)
