"""A resolver for tests: answers from a table, as a hosts file would, and never asks DNS."""

from __future__ import annotations

import socket
from collections.abc import Sequence

from aiohttp.abc import AbstractResolver, ResolveResult


class StaticResolver(AbstractResolver):
    """Each name answers its addresses; a name with several answers gives them in turn
    (the last one from then on), as a rebinding DNS server would. Any other name fails
    as an unknown one does. Every question is recorded in ``asked``."""

    def __init__(self, table: dict[str, Sequence[Sequence[str]]]) -> None:
        self.table = {name: list(answers) for name, answers in table.items()}
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        answers = self.table.get(host.lower().rstrip("."))
        if not answers:
            raise OSError(socket.EAI_NONAME, f"{host} is not in the test's table")
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None
