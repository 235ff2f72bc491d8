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


def duplicate_keys(root: yaml.Node) -> list[tuple[yaml.Node, yaml.Node]]:
    """(first, again) key nodes of each key a mapping holds twice: YAML loaders keep
    the last silently, so a file that says ``spec:`` twice would apply the second."""
    found: list[tuple[yaml.Node, yaml.Node]] = []
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue  # an alias of a node already looked at
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, yaml.Node] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in first:
                        found.append((first[key.value], key))
                    first.setdefault(key.value, key)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return sorted(found, key=lambda pair: (pair[1].start_mark.line, pair[1].start_mark.column))
