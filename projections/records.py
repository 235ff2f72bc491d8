"""How view records are stored: a schedule's record compact, over frozen defaults.

A schedule's record (``schedules.py``) holds every config field, the counters of its
fires and the file it follows, and for an idle schedule most of them are defaults:
whole, it is some 700 bytes of JSON. Stored, it keeps only what differs from the
template below, marked ``"f": 1`` (the keys and the rules of ``service/store/
snapshots.py``); every reader gets it back whole through ``decode``, so the API and
the handlers never see the compact form. Records of other kinds, and schedule records
written before this format, are stored and read as they are.

The template is frozen: the record's defaults as of this format, written out as
values. A later change of a default needs a new format; this one keeps its meaning.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from service.store.snapshots import COMPACT_V1, FORMAT_KEY, difference, overlay

Record = dict[str, Any]

SCHEDULE_PREFIX: Final = "schedule:"

# A schedule record with every default, in sorted key order (the order records are
# written in, so a record read back renders as before). Never edit: add a format.
SCHEDULE_RECORD_V1: Final[Record] = {
    "deleted": False,
    "description": "",
    "divergence": {},
    "info": {
        "action_count": 0,
        "buffer_dropped_count": 0,
        "last_run_at": None,
        "last_run_status": None,
        "missed_catchup_count": 0,
        "overlap_skipped_count": 0,
        "recent_actions": [],
        "running_runs": [],
    },
    "input": None,
    "max_actions": None,
    "name": "",
    "note": "",
    "policy": {
        "buffer_max": 100,
        "catchup": "latest",
        "catchup_max": 100,
        "catchup_window": "365d",
        "overlap": "skip",
        "pause_on_failure": False,
    },
    "spec": {
        "cron": [],
        "end_at": None,
        "exclude_cron": [],
        "intervals": [],
        "jitter": "0s",
        "start_at": None,
        "timezone": "UTC",
    },
    "status": "active",
    "tags": [],
}


# The template as JSON: a fresh deep copy of it is one orjson.loads (a projector decodes
# a record for nearly every fire); and each nested part's JSON, to pass over a part equal
# to its default in one comparison.
_TEMPLATE_JSON: Final = orjson.dumps(SCHEDULE_RECORD_V1)
_PARTS_JSON: Final = {
    key: orjson.dumps(part) for key, part in SCHEDULE_RECORD_V1.items() if type(part) is dict
}


def encode(name: str, record: Record) -> bytes:
    """The stored value of view record ``name``."""
    if name.startswith(SCHEDULE_PREFIX):
        out = difference(record, SCHEDULE_RECORD_V1, {}, _PARTS_JSON)
        if out is not None:
            record = {FORMAT_KEY: COMPACT_V1, **out}
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def decode(name: str, raw: bytes | str) -> Record:
    """View record ``name``, whole, from its stored value (compact or not)."""
    record: Record = orjson.loads(raw)
    if not name.startswith(SCHEDULE_PREFIX) or record.get(FORMAT_KEY) != COMPACT_V1:
        return record
    del record[FORMAT_KEY]
    return overlay(orjson.loads(_TEMPLATE_JSON), record, sort_keys=True)
