"""Namespaces (tenants): which one a request acts in, and how its ids are kept.

A request names its namespace with the ``Cronstream-Namespace`` header. Without it, it
acts in ``default`` when its token is for ``default`` (or when no token is asked for),
else in the token's only namespace. A token acts only in its own namespaces: naming
another is refused (403) whether or not that namespace holds anything, so the answer
tells nothing about it.

Ids: a resource of namespace ``NS`` other than ``default`` is kept under ``NS/ID``. The
separator is one that ids can never contain (ids match ``ID_PATTERN``, no ``/``), and
``default`` keeps bare ids, so everything stored before namespaces existed is the
``default`` namespace unchanged.

Quotas: a namespace may cap its schedules, the shortest time between two fires of a
schedule's spec, and a schedule's catch-up burst (``policy.catchup_max``).

Pure: no Redis, no HTTP.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from itertools import pairwise

from service.domain.ids import ID_PATTERN, NAMESPACE_SEPARATOR, is_valid_id
from service.domain.schedule import ScheduleConfig
from service.domain.spec import Spec, next_fire_times
from service.domain.timeutil import format_duration

DEFAULT = "default"
HEADER = "Cronstream-Namespace"
SEPARATOR = NAMESPACE_SEPARATOR
NAMESPACE_PATTERN = ID_PATTERN
assert SEPARATOR not in NAMESPACE_PATTERN


class NamespaceRefused(Exception):
    """The request may not act in the namespace it named (or implied): a 403."""


class BadNamespace(ValueError):
    """The header is not a namespace name: a 422 naming the header."""


def is_valid_namespace(name: str) -> bool:
    return is_valid_id(name)


def qualify(namespace: str, ident: str) -> str:
    """The internal id of ``ident`` in ``namespace`` (bare in ``default``)."""
    return ident if namespace == DEFAULT else f"{namespace}{SEPARATOR}{ident}"


def split(internal: str) -> tuple[str, str]:
    """(namespace, id) of an internal id; a bare id is of ``default``."""
    namespace, sep, ident = internal.partition(SEPARATOR)
    return (namespace, ident) if sep else (DEFAULT, internal)


def namespace_of(internal: str) -> str:
    return split(internal)[0]


def local(internal: str, namespace: str) -> str | None:
    """The bare id of ``internal`` if it is of ``namespace`` (None: of another one)."""
    owner, ident = split(internal)
    return ident if owner == namespace else None


def prefix(namespace: str) -> str:
    """What every internal id of ``namespace`` starts with ("" in ``default``, whose ids
    are the ones without a separator)."""
    return "" if namespace == DEFAULT else f"{namespace}{SEPARATOR}"


def choose(named: str | None, token_namespaces: Collection[str] | None) -> str:
    """The namespace a request acts in: ``named`` (the header, None: absent) checked
    against the token's namespaces (None: no token asked for, any may be named).

    Raises BadNamespace for a name that is not one, NamespaceRefused when the token is not
    for it (or is for several, none of them ``default``, and none was named)."""
    if named is not None and not is_valid_namespace(named):
        raise BadNamespace("a namespace is 1 to 128 letters, digits, '.', '_' or '-'")
    if token_namespaces is None:
        return named or DEFAULT
    if named is None:
        if DEFAULT in token_namespaces:
            return DEFAULT
        if len(token_namespaces) == 1:
            return next(iter(token_namespaces))
        raise NamespaceRefused(
            f"this token is for several namespaces: name one with the {HEADER} header"
        )
    if named not in token_namespaces:
        raise NamespaceRefused(f"this token is not for namespace {named}")
    return named


QUOTA_HORIZON = 1000
"""How many of a spec's next fire times the minimum interval is judged on."""


@dataclass(frozen=True)
class Quota:
    """A namespace's limits (None: no limit)."""

    max_schedules: int | None = None
    min_interval_ms: int | None = None
    max_catchup: int | None = None


def shortest_gap(spec: Spec, after_ms: int) -> int | None:
    """The shortest time between two of ``spec``'s next QUOTA_HORIZON nominal fire times
    (None: it fires once or never)."""
    times = next_fire_times(spec, after_ms, QUOTA_HORIZON)
    return min((b - a for a, b in pairwise(times)), default=None)


def over_quota(
    namespace: str, quota: Quota, config: ScheduleConfig, after_ms: int
) -> list[tuple[str, str]]:
    """(field, message) for each limit of ``quota`` that ``config`` passes."""
    found: list[tuple[str, str]] = []
    if quota.min_interval_ms is not None:
        gap = shortest_gap(config.spec, after_ms)
        if gap is not None and gap < quota.min_interval_ms:
            found.append(
                (
                    "spec",
                    f"fires {format_duration(gap)} apart; namespace {namespace} allows one fire "
                    f"every {format_duration(quota.min_interval_ms)} at most",
                )
            )
    if quota.max_catchup is not None and config.policy.catchup_max > quota.max_catchup:
        found.append(
            (
                "policy.catchup_max",
                f"namespace {namespace} allows at most {quota.max_catchup}",
            )
        )
    return found


def schedules_full(namespace: str, quota: Quota, count: int) -> str | None:
    """Why one more schedule does not fit in ``namespace`` holding ``count`` (None: it does)."""
    if quota.max_schedules is not None and count >= quota.max_schedules:
        return (
            f"namespace {namespace} holds {count} schedules, its maximum is {quota.max_schedules}"
        )
    return None
