"""A schedule view record's fast encode and decode agree with the general compact form
(service/store/snapshots.py) for records of every shape."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from projections import records
from service.store.snapshots import difference, overlay

TEMPLATE = records.SCHEDULE_RECORD_V1

BASE: dict[str, Any] = {
    **copy.deepcopy(TEMPLATE),
    "created_at": 1,
    "id": "nightly",
    "position": "1-0",
    "updated_at": 2,
    "version": 3,
    "workflow_id": "w",
    "spec": {**TEMPLATE["spec"], "cron": ["0 2 * * *"]},
}


def changed(change: str) -> dict[str, Any]:
    record = copy.deepcopy(BASE)
    match change:
        case "idle":
            pass
        case "fired":
            record["info"] |= {"action_count": 3, "last_run_at": 5, "recent_actions": [{"a": 1}]}
        case "float_for_int":  # equal in Python, not in JSON
            record["policy"]["catchup_max"] = 100.0
        case "int_for_bool":
            record["deleted"] = 0
        case "missing_key":  # no merge gives it back: stored whole
            del record["spec"]["jitter"]
        case "divergence":
            record["divergence"] = {"spec": {"file": 1}, "input": {"file": 2}}
        case "input":
            record["input"] = {"z": 1, "a": [1, {"b": None}]}
    return record


@pytest.mark.parametrize(
    "change",
    ["idle", "fired", "float_for_int", "int_for_bool", "missing_key", "divergence", "input"],
)
def test_fast_encode_and_decode_agree_with_the_general_form(change: str) -> None:
    record = changed(change)
    general = difference(record, TEMPLATE, {})
    fast = difference(record, TEMPLATE, {}, records._PARTS_JSON)
    assert orjson.dumps(fast) == orjson.dumps(general)
    stored = records.encode("schedule:nightly", record)
    whole = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    assert orjson.dumps(records.decode("schedule:nightly", stored)) == whole
    if general is not None:  # as stored: with sorted keys
        read = orjson.loads(orjson.dumps(general, option=orjson.OPT_SORT_KEYS))
        assert orjson.dumps(overlay(copy.deepcopy(TEMPLATE), read, sort_keys=True)) == whole


def test_decoded_records_share_nothing_with_each_other() -> None:
    stored = records.encode("schedule:nightly", changed("idle"))
    first = records.decode("schedule:nightly", stored)
    first["info"]["recent_actions"].append({"a": 1})
    assert records.decode("schedule:nightly", stored)["info"]["recent_actions"] == []
