"""Namespaces: internal ids, and which namespace a request acts in."""

from __future__ import annotations

import pytest

from service.domain import namespaces as ns
from service.domain.ids import is_valid_id


@pytest.mark.parametrize(
    ("namespace", "ident", "internal"),
    [("default", "nightly", "nightly"), ("team-a", "nightly", "team-a/nightly")],
)
def test_ids_are_bare_in_default_and_prefixed_elsewhere(
    namespace: str, ident: str, internal: str
) -> None:
    assert ns.qualify(namespace, ident) == internal
    assert ns.split(internal) == (namespace, ident)
    assert ns.namespace_of(internal) == namespace


def test_the_separator_is_in_no_id_so_an_internal_id_is_never_a_bare_one() -> None:
    assert not is_valid_id(ns.qualify("team-a", "nightly"))
    assert is_valid_id("team-a.nightly_1")
    assert ns.split("team-a.nightly_1") == ("default", "team-a.nightly_1")


CHOICES = [
    # header, token's namespaces (None: no token asked for), namespace
    (None, None, "default"),
    ("team-a", None, "team-a"),
    (None, ("default",), "default"),
    (None, ("team-a", "default"), "default"),
    (None, ("team-a",), "team-a"),
    ("team-a", ("default", "team-a"), "team-a"),
    ("default", ("default",), "default"),
]


@pytest.mark.parametrize(("named", "token", "chosen"), CHOICES)
def test_the_namespace_a_request_acts_in(
    named: str | None, token: tuple[str, ...] | None, chosen: str
) -> None:
    assert ns.choose(named, token) == chosen


@pytest.mark.parametrize(
    ("named", "token"),
    [("team-b", ("team-a",)), ("team-a", ("default",)), (None, ("team-a", "team-b"))],
)
def test_a_namespace_the_token_is_not_for_is_refused(
    named: str | None, token: tuple[str, ...]
) -> None:
    with pytest.raises(ns.NamespaceRefused):
        ns.choose(named, token)


@pytest.mark.parametrize("named", ["", "a/b", "-x", "x" * 129, "é"])
def test_a_header_that_is_no_namespace_name_is_bad_input(named: str) -> None:
    with pytest.raises(ns.BadNamespace):
        ns.choose(named, None)
    with pytest.raises(ns.BadNamespace):
        ns.choose(named, ("default",))


def test_only_the_default_namespace_holds_resources_yet() -> None:
    ns.served("default")
    with pytest.raises(ns.NamespaceRefused):
        ns.served("team-a")
