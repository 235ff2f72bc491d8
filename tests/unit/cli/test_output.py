"""Tables for people, JSON and YAML for programs, and the next-page hint."""

from __future__ import annotations

import io
from typing import Any

import pytest
import yaml

from service.cli.output import Column, cell, emit, emit_record, table_lines


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (False, "no"),
        (True, "yes"),
        (None, "-"),
        ({}, "-"),
        ([], "-"),
        ("", "-"),
        (0, "0"),
        (["a", "b"], "a, b"),
        ({"depth": 1}, '{"depth":1}'),
        ([{"every": "15m"}], '[{"every":"15m"}]'),
        ("text", "text"),
    ],
)
def test_cells_read_as_a_person_writes_them(value: Any, shown: str) -> None:
    assert cell(value) == shown


def test_a_table_never_shows_python_values() -> None:
    rows = [{"id": "a", "paused": False, "input": {}, "tags": [], "policy": {"overlap": "skip"}}]
    lines = table_lines(rows, ("id", "paused", "input", "tags", "policy.overlap"))
    assert lines[0].split() == ["ID", "PAUSED", "INPUT", "TAGS", "POLICY.OVERLAP"]
    assert lines[1].split() == ["a", "no", "-", "-", "skip"]
    assert not {"False", "{}", "[]", "None"} & set(lines[1].split())


def test_computed_columns_and_records() -> None:
    out = io.StringIO()
    row = {"id": "a", "spec": {"cron": ["0 2 * * *"]}}
    emit_record(row, ("id", Column("CRONS", lambda r: len(r["spec"]["cron"]))), out)
    assert out.getvalue().splitlines() == ["ID     a", "CRONS  1"]


def test_yaml_and_json_print_the_document_whole(capsys: pytest.CaptureFixture[str]) -> None:
    page = {"items": [{"id": "a", "paused": False, "input": None}], "next_cursor": "c2"}
    emit(page, "yaml", ("id",))
    out, err = capsys.readouterr()
    assert yaml.safe_load(out) == page and err == ""
    emit(page, "json", ("id",))
    out, err = capsys.readouterr()
    assert '"next_cursor": "c2"' in out and err == ""


def test_a_table_page_with_a_cursor_hints_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    emit({"items": [{"id": "a"}], "next_cursor": "c2"}, "table", ("id",))
    out, err = capsys.readouterr()
    assert out.splitlines() == ["ID", "a"]
    assert err == "more: --cursor c2\n"
    emit({"items": [{"id": "a"}], "next_cursor": None}, "table", ("id",))
    assert capsys.readouterr().err == ""


def test_a_fire_detail_names_its_reason_once() -> None:
    from service.cli.schedule_describe import fire_detail

    reason = "held until run r1 ends (the previous time of its backfill)"
    assert fire_detail({"reason": reason, "held": True}) == reason
    assert fire_detail({"held": True}) == "held: an earlier run was still running"
    assert fire_detail({}) is None
