"""The outbound rule as a pure function: which addresses a webhook may reach.

Addresses here are strings only: no socket is opened and no name is resolved (an
autouse fixture makes either fail the test).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest

from service.domain.addresses import (
    PUBLIC_ONLY,
    AddressClass,
    OutboundPolicy,
    is_localhost,
    parse_literal,
)

HINT = "set CRONSTREAM_ALLOW_PRIVATE_TARGETS=1 or CRONSTREAM_TARGET_ALLOWLIST to allow it"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the address rule must not touch the network")

    for name in ("socket", "create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, forbidden)
    yield


REFUSED = [
    ("127.0.0.1", AddressClass.LOOPBACK, None),
    ("127.1.2.3", AddressClass.LOOPBACK, None),
    ("::1", AddressClass.LOOPBACK, None),
    ("10.0.0.1", AddressClass.PRIVATE, None),
    ("172.16.0.1", AddressClass.PRIVATE, None),
    ("172.31.255.254", AddressClass.PRIVATE, None),
    ("192.168.1.1", AddressClass.PRIVATE, None),
    ("100.64.0.1", AddressClass.PRIVATE, None),
    ("169.254.169.254", AddressClass.METADATA, None),
    ("100.100.100.200", AddressClass.METADATA, None),
    ("fd00:ec2::254", AddressClass.METADATA, None),
    ("169.254.1.1", AddressClass.LINK_LOCAL, None),
    ("fe80::1", AddressClass.LINK_LOCAL, None),
    ("fe80::1%eth0", AddressClass.LINK_LOCAL, None),
    ("fd00::1", AddressClass.UNIQUE_LOCAL, None),
    ("fc00::1", AddressClass.UNIQUE_LOCAL, None),
    ("224.0.0.1", AddressClass.MULTICAST, None),
    ("ff02::1", AddressClass.MULTICAST, None),
    ("0.0.0.0", AddressClass.UNSPECIFIED, None),
    ("::", AddressClass.UNSPECIFIED, None),
    ("255.255.255.255", AddressClass.RESERVED, None),
    ("::ffff:127.0.0.1", AddressClass.LOOPBACK, "IPv4-mapped 127.0.0.1"),
    ("[::ffff:127.0.0.1]", AddressClass.LOOPBACK, "IPv4-mapped 127.0.0.1"),
    ("::ffff:169.254.169.254", AddressClass.METADATA, "IPv4-mapped 169.254.169.254"),
    ("::ffff:0:10.0.0.1", AddressClass.PRIVATE, "IPv4-translated 10.0.0.1"),
    ("::127.0.0.1", AddressClass.LOOPBACK, "IPv4-compatible 127.0.0.1"),
    ("64:ff9b::7f00:1", AddressClass.LOOPBACK, "NAT64 127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", AddressClass.METADATA, "NAT64 169.254.169.254"),
    ("64:ff9b:1::a00:1", AddressClass.PRIVATE, None),
    ("2002:7f00:1::", AddressClass.LOOPBACK, "6to4 127.0.0.1"),
    ("2002:c0a8:101::1", AddressClass.PRIVATE, "6to4 192.168.1.1"),
    # Teredo: the client's address is stored inverted (here 127.0.0.1)
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", AddressClass.LOOPBACK, "Teredo 127.0.0.1"),
]


@pytest.mark.parametrize(("address", "kind", "carried"), REFUSED)
def test_non_public_addresses_are_refused(
    address: str, kind: AddressClass, carried: str | None
) -> None:
    refusal = PUBLIC_ONLY.check_host(address)
    assert refusal is not None
    assert (refusal.kind, refusal.carried) == (kind, carried)
    assert str(refusal).endswith(f"is {kind}{f' ({carried})' if carried else ''}: refused; {HINT}")


PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "172.32.0.1",  # just past 172.16.0.0/12
    "100.128.0.1",  # just past the shared space
    "169.255.0.1",
    "2606:4700::1111",
    "2a00:1450:4001:81b::200e",
    "::ffff:93.184.216.34",  # IPv4-mapped, but of a public address
    "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34
    "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert PUBLIC_ONLY.check(address, "hooks.example.com") is None
    assert PUBLIC_ONLY.check_host(address) is None


def test_the_message_names_the_address_the_host_and_the_way_out() -> None:
    refusal = PUBLIC_ONLY.check("127.0.0.1", "localhost")
    assert str(refusal) == f"target address 127.0.0.1 (localhost) is loopback: refused; {HINT}"
    literal = PUBLIC_ONLY.check_host("127.0.0.1")
    assert str(literal) == f"target address 127.0.0.1 is loopback: refused; {HINT}"


@pytest.mark.parametrize(
    ("host", "meant"),
    [
        ("127.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("169.254.43518", "169.254.169.254"),
        ("0", "0.0.0.0"),
    ],
)
def test_numeric_forms_count_as_the_address_they_mean(host: str, meant: str) -> None:
    assert parse_literal(host) == IPv4Address(meant)
    refusal = PUBLIC_ONLY.check_host(host)
    assert refusal is not None and refusal.address == meant and f"({host})" in str(refusal)


@pytest.mark.parametrize(
    "host", ["example.com", "hooks.test", "1.2.3.4.5", "256.1.1.1", "08.1.1.1", "0x", "1e3", ""]
)
def test_names_are_not_literals(host: str) -> None:
    assert parse_literal(host) is None
    assert PUBLIC_ONLY.check_host(host) is None  # judged by what they resolve to


def test_ipv6_literals_in_brackets_and_with_a_zone() -> None:
    assert parse_literal("[::1]") == IPv6Address("::1")
    assert parse_literal("FE80::1%eth0") == IPv6Address("fe80::1")


def test_localhost_names() -> None:
    assert is_localhost("localhost") and is_localhost("LOCALHOST.")
    assert is_localhost("api.localhost")
    assert not is_localhost("localhost.example.com") and not is_localhost("mylocalhost")


def test_allowing_private_targets_allows_everything() -> None:
    policy = OutboundPolicy.parse(allow_private=True)
    assert all(policy.check_host(address) is None for address, _, _ in REFUSED)


def test_an_allowlisted_network_allows_its_addresses_only() -> None:
    policy = OutboundPolicy.parse(allowlist=["127.0.0.1/32", "10.1.0.0/16", "fd00::/64"])
    assert policy.check("127.0.0.1", "hooks.test") is None
    assert policy.check_host("::ffff:127.0.0.1") is None  # the IPv4 address it carries
    assert policy.check("10.1.200.3", "a") is None
    assert policy.check("fd00::1", "b") is None
    for other in ("127.0.0.2", "10.2.0.1", "fd00:0:0:1::1", "169.254.169.254", "::1"):
        assert policy.check(other, "hooks.test") is not None


def test_an_allowlisted_host_allows_what_it_resolves_to() -> None:
    policy = OutboundPolicy.parse(allowlist=[" Internal.Example ", "", "10.0.0.1"])
    assert policy.hosts == frozenset({"internal.example"})
    assert policy.check("10.9.9.9", "internal.example.") is None
    assert policy.check("127.0.0.1", "INTERNAL.example") is None
    refused = policy.check("10.9.9.9", "other.example")
    assert refused is not None and refused.kind is AddressClass.PRIVATE
    assert policy.check("10.0.0.1", "other.example") is None  # a bare address is a /32


@pytest.mark.parametrize("entry", ["*.example.com", "a b", "10.0.0.0/33", "127.1", "http://x"])
def test_an_allowlist_entry_that_is_nothing_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a CIDR"):
        OutboundPolicy.parse(allowlist=[entry])
