"""Which addresses a webhook may reach: the rule behind the outbound guard (pure).

A webhook URL is a client's input that the service then calls, on a timer, from
inside the operator's network. So a delivery reaches only the public internet unless
the operator says otherwise: never a loopback, private, link-local, unique-local,
multicast, unspecified or reserved address, nor a cloud metadata address, nor one of
those wrapped in an IPv6 address that carries an IPv4 one (IPv4-mapped, -compatible,
-translated, NAT64, 6to4, Teredo).

``CRONSTREAM_ALLOW_PRIVATE_TARGETS=1`` lifts the rule; ``CRONSTREAM_TARGET_ALLOWLIST``
lifts it for some networks (CIDRs) and host names. The worker applies it to every
address a host name resolves to and connects only to the addresses it let through
(``service/worker/targets/guard.py``); a workflow whose URL is a literal address the
rule refuses is refused when it is defined (``workflow.check_target``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

ALLOW_PRIVATE_VAR = "CRONSTREAM_ALLOW_PRIVATE_TARGETS"
ALLOWLIST_VAR = "CRONSTREAM_TARGET_ALLOWLIST"

LOCALHOST_ADDRESSES = ("127.0.0.1", "::1")
"""What ``localhost`` and ``*.localhost`` mean, whatever a resolver says (RFC 6761)."""

_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


class AddressClass(StrEnum):
    """Why an address is not on the public internet (said as "is <value>")."""

    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link-local"
    UNIQUE_LOCAL = "unique-local"
    MULTICAST = "multicast"
    UNSPECIFIED = "unspecified"
    METADATA = "a cloud metadata address"
    RESERVED = "reserved"


# first match wins: the metadata addresses lie inside wider classes
_V4_CLASSES: tuple[tuple[IPv4Network, AddressClass], ...] = (
    (IPv4Network("169.254.169.254/32"), AddressClass.METADATA),  # AWS, GCP, Azure, OCI
    (IPv4Network("100.100.100.200/32"), AddressClass.METADATA),  # Alibaba Cloud
    (IPv4Network("0.0.0.0/8"), AddressClass.UNSPECIFIED),  # "this network"
    (IPv4Network("127.0.0.0/8"), AddressClass.LOOPBACK),
    (IPv4Network("10.0.0.0/8"), AddressClass.PRIVATE),
    (IPv4Network("172.16.0.0/12"), AddressClass.PRIVATE),
    (IPv4Network("192.168.0.0/16"), AddressClass.PRIVATE),
    (IPv4Network("100.64.0.0/10"), AddressClass.PRIVATE),  # shared (carrier-grade NAT)
    (IPv4Network("169.254.0.0/16"), AddressClass.LINK_LOCAL),
    (IPv4Network("192.0.0.0/24"), AddressClass.RESERVED),  # IETF protocol assignments
    (IPv4Network("198.18.0.0/15"), AddressClass.RESERVED),  # benchmarking
    (IPv4Network("224.0.0.0/4"), AddressClass.MULTICAST),
    (IPv4Network("240.0.0.0/4"), AddressClass.RESERVED),  # and the broadcast address
)
_V6_CLASSES: tuple[tuple[IPv6Network, AddressClass], ...] = (
    (IPv6Network("::/128"), AddressClass.UNSPECIFIED),
    (IPv6Network("::1/128"), AddressClass.LOOPBACK),
    (IPv6Network("fd00:ec2::254/128"), AddressClass.METADATA),  # AWS over IPv6
    (IPv6Network("fc00::/7"), AddressClass.UNIQUE_LOCAL),
    (IPv6Network("fe80::/10"), AddressClass.LINK_LOCAL),
    (IPv6Network("fec0::/10"), AddressClass.PRIVATE),  # site-local: deprecated, still routed
    (IPv6Network("ff00::/8"), AddressClass.MULTICAST),
    (IPv6Network("64:ff9b:1::/48"), AddressClass.PRIVATE),  # local-use NAT64
    (IPv6Network("100::/64"), AddressClass.RESERVED),  # discard-only
)
# IPv6 prefixes whose last 32 bits are an IPv4 address that the packets end up at
_V4_IN_LOW_BITS: tuple[tuple[IPv6Network, str], ...] = (
    (IPv6Network("::ffff:0:0/96"), "IPv4-mapped"),
    (IPv6Network("::ffff:0:0:0/96"), "IPv4-translated"),
    (IPv6Network("64:ff9b::/96"), "NAT64"),
    (IPv6Network("::/96"), "IPv4-compatible"),
)


@dataclass(frozen=True)
class Classified:
    kind: AddressClass
    carried: str | None = None  # the IPv4 address an IPv6 form wraps: "IPv4-mapped 127.0.0.1"


def classify(address: IPAddress) -> Classified | None:
    """Why deliveries may not reach ``address``; None for an address on the public internet."""
    if isinstance(address, IPv4Address):
        kind = next((k for net, k in _V4_CLASSES if address in net), None)
        return None if kind is None else Classified(kind)
    kind = next((k for net, k in _V6_CLASSES if address in net), None)
    if kind is not None:
        return Classified(kind)
    for form, carried in carried_ipv4(address):
        inner = classify(carried)
        if inner is not None:
            return Classified(inner.kind, f"{form} {carried}")
    return None


def carried_ipv4(address: IPv6Address) -> list[tuple[str, IPv4Address]]:
    """The IPv4 addresses an IPv6 address wraps, each with the name of its form."""
    if address.sixtofour is not None:
        return [("6to4", address.sixtofour)]
    if address.teredo is not None:
        server, client = address.teredo
        return [("Teredo", client), ("Teredo", server)]
    low = IPv4Address(int(address) & 0xFFFFFFFF)
    return [(form, low) for net, form in _V4_IN_LOW_BITS if address in net][:1]


@dataclass(frozen=True)
class Refusal:
    """A delivery the rule refuses: which address, reached by which host, and why."""

    address: str  # as the URL or the resolver gave it
    host: str  # the URL's host
    kind: AddressClass
    carried: str | None = None

    def __str__(self) -> str:
        named = "" if normal_host(self.host) == normal_host(self.address) else f" ({self.host})"
        via = f" ({self.carried})" if self.carried else ""
        return (
            f"target address {self.address}{named} is {self.kind}{via}: refused;"
            f" set {ALLOW_PRIVATE_VAR}=1 or {ALLOWLIST_VAR} to allow it"
        )


@dataclass(frozen=True)
class OutboundPolicy:
    """Where deliveries may go: the public internet, plus what the operator allows."""

    allow_private: bool = False
    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, allow_private: bool = False, allowlist: Iterable[str] = ()) -> OutboundPolicy:
        """A policy from an allowlist of CIDRs, addresses and host names.

        Raises ValueError naming the first entry that is none of these.
        """
        networks: list[Network] = []
        hosts: set[str] = set()
        for raw in allowlist:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = normal_host(entry)
            if not _HOST_NAME.fullmatch(name) or parse_literal(name) is not None:
                raise ValueError(f"{entry!r} is neither a CIDR, an IP address nor a host name")
            hosts.add(name)
        return cls(allow_private, tuple(networks), frozenset(hosts))

    def check(self, address: str, host: str) -> Refusal | None:
        """Why a delivery to ``host`` may not connect to ``address``; None when it may."""
        if self.allow_private:
            return None
        parsed = parse_literal(address)
        if parsed is None:  # not an address at all: nothing to connect to
            return Refusal(address, host, AddressClass.RESERVED)
        verdict = classify(parsed)
        if verdict is None or self._allowed(parsed, host):
            return None
        return Refusal(address, host, verdict.kind, verdict.carried)

    def check_host(self, host: str) -> Refusal | None:
        """The refusal of a URL's host when it is a literal address; None for a name,
        which can only be judged by what it resolves to when a delivery is made."""
        parsed = parse_literal(host)
        if parsed is None:
            return None
        return self.check(str(parsed), host)

    def _allowed(self, address: IPAddress, host: str) -> bool:
        if normal_host(host) in self.hosts:
            return True
        forms: list[IPAddress] = [address]
        if isinstance(address, IPv6Address):
            forms += [carried for _, carried in carried_ipv4(address)]
        return any(form in net for net in self.networks for form in forms)


PUBLIC_ONLY = OutboundPolicy()
"""The default: deliveries reach public addresses only."""


def is_localhost(host: str) -> bool:
    name = normal_host(host)
    return name == "localhost" or name.endswith(".localhost")


def normal_host(host: str) -> str:
    """A host as compared: lower case, without IPv6 brackets or a trailing dot."""
    return host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")


def parse_literal(host: str) -> IPAddress | None:
    """The address a host names literally, None for a name.

    Besides the usual forms, the numeric IPv4 forms that ``inet_aton`` still takes
    (``127.1``, ``2130706433``, ``0x7f.0.0.1``, ``0177.0.0.1``) count as the address
    they mean, so that they cannot stand in for a refused one.
    """
    text = normal_host(host).split("%", 1)[0]  # an IPv6 zone does not change the class
    try:
        return ip_address(text)
    except ValueError:
        return _inet_aton(text)


def _inet_aton(text: str) -> IPv4Address | None:
    values = [_number(part) for part in text.split(".")]
    if not 1 <= len(values) <= 4 or any(v is None for v in values):
        return None
    *head, last = [v for v in values if v is not None]
    last_bits = 8 * (5 - len(values))  # the last part fills the bytes left
    if any(v > 255 for v in head) or last >= 1 << last_bits:
        return None
    number = 0
    for value in head:
        number = number << 8 | value
    return IPv4Address(number << last_bits | last)


def _number(part: str) -> int | None:
    if part[:2] == "0x":
        digits, base, allowed = part[2:], 16, "0123456789abcdef"
    elif len(part) > 1 and part[0] == "0":
        digits, base, allowed = part[1:], 8, "01234567"
    else:
        digits, base, allowed = part, 10, "0123456789"
    if not digits or any(c not in allowed for c in digits):
        return None
    return int(digits, base)
