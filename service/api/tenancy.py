"""Ids at the edge: a client names resources of the namespace its request acts in by
bare ids; cronstream keeps them qualified (``NS/ID`` outside ``default``, see
service/domain/namespaces.py). Handlers qualify what a path or query names and show
bare ids back, so a resource of another namespace is simply one that is not found.
"""

from __future__ import annotations

from aiohttp import web

from service.api.namespaces import namespace
from service.domain import namespaces


def internal(request: web.Request, ident: str) -> str:
    """The internal id of ``ident`` (a bare id) in the request's namespace."""
    return namespaces.qualify(namespace(request), ident)


def internal_or_none(request: web.Request, ident: str | None) -> str | None:
    return None if ident is None else internal(request, ident)


def bare(internal_id: str) -> str:
    """The id a client knows ``internal_id`` by (in its own namespace)."""
    return namespaces.split(internal_id)[1]


def owns(request: web.Request, internal_id: str) -> bool:
    """Whether ``internal_id`` is of the request's namespace."""
    return namespaces.local(internal_id, namespace(request)) is not None


def id_prefix(request: web.Request) -> str:
    return namespaces.prefix(namespace(request))
