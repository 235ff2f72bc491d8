"""The outbound guard: webhook connections go only where the outbound policy allows.

The rule is ``service/domain/addresses.py``; this module applies it inside the client
session's connector, where no request can go around it:

- a host name is resolved once, by ``GuardedResolver``, which checks every address
  and hands aiohttp only those the policy allows, so the connection is made to an
  address that was checked (a resolver that answers differently a moment later,
  as in DNS rebinding, is never asked again for that connection);
- a literal address never reaches a resolver, so ``refuse_literals``, a middleware
  of the session, checks it before the request is sent;
- ``localhost`` and ``*.localhost`` are loopback without asking any resolver.

A refusal is raised as ``TargetRefused`` (aiohttp wraps it as the cause of its own
connection error: ``refusal_of`` finds it).
"""

from __future__ import annotations

import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from service.domain.addresses import (
    LOCALHOST_ADDRESSES,
    OutboundPolicy,
    Refusal,
    is_localhost,
)


class TargetRefused(PermissionError):
    """A delivery the outbound policy refuses; nothing was sent."""

    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal
        super().__init__(str(refusal))


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` (the system's resolver by default) and keeps only the
    addresses the policy allows; refuses the host when none is left."""

    def __init__(self, policy: OutboundPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if is_localhost(host):
            found = _localhost(host, port, family)
        else:
            found = await self.inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refusals: list[Refusal] = []
        for result in found:
            refusal = self.policy.check(result["host"], host)
            if refusal is None:
                allowed.append(result)
            else:
                refusals.append(refusal)
        if not allowed and refusals:
            raise TargetRefused(refusals[0])
        return allowed

    async def close(self) -> None:
        await self.inner.close()


def refuse_literals(policy: OutboundPolicy) -> aiohttp.ClientMiddlewareType:
    """A session middleware that refuses a URL whose host is a literal address the
    policy refuses (aiohttp connects to those without asking the resolver)."""

    async def middleware(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        refusal = policy.check_host(request.url.raw_host or "")
        if refusal is not None:
            raise TargetRefused(refusal)
        return await handler(request)

    return middleware


def refusal_of(exc: BaseException) -> TargetRefused | None:
    """The refusal behind an error, however aiohttp wrapped it (a bounded walk)."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return None
        if isinstance(seen, TargetRefused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _localhost(host: str, port: int, family: int) -> list[ResolveResult]:
    found = []
    for address in LOCALHOST_ADDRESSES:
        kind = socket.AF_INET6 if ":" in address else socket.AF_INET
        if family in (socket.AF_UNSPEC, kind):
            found.append(
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=port,
                    family=kind,
                    proto=0,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
    return found
