"""YAML to data, keeping the node tree whose marks say where each value is.

PyYAML's C parser composes the nodes and its safe constructor builds the data; the tag
of a plain scalar (is ``5m`` a string, ``true`` a boolean?) is looked up once per
distinct text, since files of thousands of schedules repeat the same keys and values.
"""

from __future__ import annotations

from typing import Any

import yaml

TIMESTAMP = "tag:yaml.org,2002:timestamp"
_RESOLVED_BOUND = 100_000
_resolved: dict[tuple[Any, ...], Any] = {}


class Loader(yaml.CSafeLoader):
    """YAML's safe loader, but instants stay text: the models read RFC 3339 strings,
    and YAML 1.1 would turn an unquoted ``2026-01-01T00:00:00Z`` into a datetime."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != TIMESTAMP]
        for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
    }

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is not yaml.ScalarNode or not implicit[0]:
            return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        key = (value, tuple(implicit))
        tag = _resolved.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
            if len(_resolved) < _RESOLVED_BOUND:
                _resolved[key] = tag
        return tag


def load(text: bytes) -> tuple[yaml.Node | None, Any]:
    """The document's node tree and its data, as ``safe_load`` builds it
    (MarkedYAMLError when it is not YAML, or holds a tag the safe loader refuses)."""
    loader = Loader(text)
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()
