"""Which keys a delivery is signed with, from the workflow's signing source (pure)."""

from __future__ import annotations

import base64

import pytest

from service.domain.workflow import HttpTarget as HttpTargetConfig
from service.worker.targets.http import StoredSigning, resolve_keys

OLD, NEW = bytes(range(32)), bytes(range(32, 64))


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


def target(**signing: str) -> HttpTargetConfig:
    return HttpTargetConfig(type="http", url="https://example.com/hook", **signing)  # type: ignore[arg-type]


def test_stored_signing_signs_with_every_live_secret_and_ignores_the_environment() -> None:
    stored = StoredSigning((whsec(NEW), whsec(OLD)))
    assert resolve_keys(target(signing="stored"), "ignored", stored) == ((NEW, OLD), None)


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        (None, "not read"),
        (StoredSigning(error="CRONSTREAM_SECRET_KEY is not set"), "CRONSTREAM_SECRET_KEY"),
        (StoredSigning(), "no live stored signing secret"),
        (StoredSigning(("whsec_not*base64",)), "unusable"),
    ],
)
def test_stored_signing_without_usable_secrets_has_no_key_and_says_why(
    stored: StoredSigning | None, why: str
) -> None:
    keys, error = resolve_keys(target(signing="stored"), None, stored)
    assert keys == () and error is not None and why in error


def test_the_environment_secret_signs_alone_as_before() -> None:
    assert resolve_keys(target(secret_env="HOOK"), whsec(OLD), None) == ((OLD,), None)
    assert resolve_keys(target(signing="env", secret_env="HOOK"), whsec(OLD), None)[0] == (OLD,)
    assert resolve_keys(target(), None, None) == ((), None)
    keys, error = resolve_keys(target(secret_env="HOOK"), None, None)
    assert keys == () and error is not None and "HOOK is not set" in error
