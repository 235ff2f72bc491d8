"""How a write-model snapshot is stored in its state hash: compact, over frozen defaults.

A snapshot as the application layer builds it (``commands.py``) holds every field of
a config, and most of them keep their default. Stored whole, a schedule's snapshot
is some 480 bytes, too long for Redis's small hash encoding, so each idle schedule
pays the large per-field cost of a hash table. The store keeps only what differs
from a defaults template and marks the result with ``"f": 1``.

The templates below are frozen: they are the defaults as of this format, written out
as values, not read from the pydantic models. A later change of a model's default
must not change what an old stored snapshot means; such a change needs a new
template under a new format number, and ``expand`` keeps reading this one.

A snapshot without the mark (written before this format) is read as it is.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

FORMAT_KEY: Final = "f"
COMPACT_V1: Final = 1
_MISSING: Final = object()
_NONE: Final[dict[str, dict[str, Any]]] = {}

# A schedule's config with every field at its default, as ``model_dump(mode="json")``
# wrote it when format 1 was made. Never edit: add a format instead.
SCHEDULE_CONFIG_V1: Final[dict[str, Any]] = {
    "name": "",
    "description": "",
    "spec": {
        "cron": [],
        "intervals": [],
        "exclude_cron": [],
        "timezone": "UTC",
        "jitter": "0s",
        "start_at": None,
        "end_at": None,
    },
    "policy": {
        "overlap": "skip",
        "catchup": "latest",
        "catchup_window": "365d",
        "catchup_max": 100,
        "buffer_max": 100,
        "pause_on_failure": False,
    },
    "input": None,
    "max_actions": None,
    "tags": [],
}

SCHEDULE_V1: Final[dict[str, Any]] = {
    "config": SCHEDULE_CONFIG_V1,
    "status": "active",
    "note": "",
    "deleted": False,
}

WORKFLOW_V1: Final[dict[str, Any]] = {
    "config": {
        "name": "",
        "description": "",
        "input_schema": None,
        "retry": {
            "max_attempts": 3,
            "initial_interval": "1s",
            "max_interval": "5m",
            "backoff": 2.0,
        },
        "timeout": "5m",
    },
    "deleted": False,
}

# A managed schedule's declared config is most often its config (after an apply):
# then the compact form says so with ``true``, never a declared config's whole value.
SAME_AS_CONFIG: Final = True

# Keys that a snapshot may leave out, compacted against a template when present.
# A managed schedule's declared config is a config like any other.
_SCHEDULE_OPTIONAL: Final[dict[str, dict[str, Any]]] = {"declared": SCHEDULE_CONFIG_V1}

_TEMPLATES: Final[dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]]]]] = {
    "schedule": (SCHEDULE_V1, _SCHEDULE_OPTIONAL),
    "workflow": (WORKFLOW_V1, {}),
}


def compact(kind: str, snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot as it is stored: only what differs from the kind's template.

    A snapshot that the template cannot describe exactly (a kind without one, or a
    snapshot missing a key the template has) is stored whole, so that ``expand``
    always gives back an equal dict.
    """
    found = _TEMPLATES.get(kind)
    if found is None:
        return snapshot
    template, optional = found
    declared_as_config = "declared" in optional and _is_config(snapshot)
    rest = (
        {k: v for k, v in snapshot.items() if k != "declared"} if declared_as_config else snapshot
    )
    out = difference(rest, template, optional)
    if out is None:
        return snapshot
    if declared_as_config:
        out["declared"] = SAME_AS_CONFIG
    return {FORMAT_KEY: COMPACT_V1, **out}


def expand(kind: str, stored: dict[str, Any]) -> dict[str, Any]:
    """The whole snapshot from its stored form (compact or, from before, whole)."""
    if stored.get(FORMAT_KEY) != COMPACT_V1:
        return stored
    template, optional = _TEMPLATES[kind]
    body = {k: v for k, v in stored.items() if k != FORMAT_KEY}
    out = overlay(_fresh(template), body)
    for key, base in optional.items():
        if isinstance(out.get(key), dict):
            out[key] = overlay(_fresh(base), out[key])
    if out.get("declared") is SAME_AS_CONFIG:
        out["declared"] = _fresh(out["config"])
    return out


def _is_config(snapshot: dict[str, Any]) -> bool:
    declared, config = snapshot.get("declared"), snapshot.get("config")
    if not isinstance(declared, dict):
        return False
    # as JSON, not by ==, which holds for True and 1 in an input
    return declared is config or orjson.dumps(declared) == orjson.dumps(config)


def difference(
    value: dict[str, Any],
    template: dict[str, Any],
    optional: dict[str, dict[str, Any]],
    parts: dict[str, bytes] | None = None,
) -> dict[str, Any] | None:
    """The keys of ``value`` that differ from ``template``, nested dicts compared key by
    key; None if ``value`` lacks a key of ``template`` (then no merge gives it back).
    ``optional`` keys may be absent; when present, they differ from their own template.
    ``parts``: the JSON of some of the template's nested dicts; a part of ``value`` with
    the same JSON (equal by value and by type) is passed over in one comparison."""
    if not template.keys() <= value.keys():
        return None
    out: dict[str, Any] = {}
    for key, item in value.items():
        base = template.get(key, _MISSING)
        if base is _MISSING:
            base = optional.get(key)
            if isinstance(base, dict) and isinstance(item, dict):
                inner = difference(item, base, _NONE)
                if inner is None:
                    return None
                item = inner
            out[key] = item
        elif type(base) is dict and type(item) is dict:
            if parts is not None and orjson.dumps(item) == parts.get(key):
                continue
            inner = difference(item, base, _NONE)
            if inner is None:
                return None
            if inner:
                out[key] = inner
        elif type(item) is not type(base) or item != base:
            # by type too: False == 0 and 1 == 1.0 in Python, but not in JSON
            out[key] = item
    return out


def overlay(
    fresh: dict[str, Any], stored: dict[str, Any], *, sort_keys: bool = False
) -> dict[str, Any]:
    """``stored`` over ``fresh``, a copy of a template that this changes and returns;
    nested dicts are merged too. Keys keep the template's order, a stored key the
    template lacks comes after them; with ``sort_keys`` a dict that gained such a key is
    put in sorted key order (as a record written with sorted keys reads)."""
    grown = False
    for key, item in stored.items():
        base = fresh.get(key, _MISSING)
        if base is _MISSING:
            grown = True
            fresh[key] = item
        elif type(base) is dict and type(item) is dict:
            fresh[key] = overlay(base, item, sort_keys=sort_keys)
        else:
            fresh[key] = item
    return {key: fresh[key] for key in sorted(fresh)} if sort_keys and grown else fresh


def _fresh(default: Any) -> Any:
    """A copy of a template's value that its reader may change freely."""
    if isinstance(default, dict):
        return {key: _fresh(item) for key, item in default.items()}
    return [_fresh(item) for item in default] if isinstance(default, list) else default
