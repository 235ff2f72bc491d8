"""Printing API results as a table, JSON or YAML.

Tables are for people: booleans read ``yes``/``no``, a missing or empty value is
``-``, objects are compact JSON. JSON and YAML print the API's document as it
came, so scripts see every field. A list page whose API reply carries a cursor
gets a ``more: --cursor …`` hint on stderr under a table, so stdout stays the
table alone; JSON and YAML carry ``next_cursor`` in the document itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
import yaml

FORMATS = ("table", "json", "yaml")


@dataclass(frozen=True)
class Column:
    """A table column: its header and how to read its value from a row."""

    header: str
    get: Callable[[dict[str, Any]], Any]


def path_column(path: str, header: str | None = None) -> Column:
    return Column(header or path.upper(), lambda row: lookup(row, path))


def lookup(row: Any, path: str) -> Any:
    """The value at a dotted path of nested objects (None where a step is missing)."""
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def cell(value: Any) -> str:
    """A value as a person reads it in a table cell."""
    if value is None or value == "" or value == {} or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and all(_scalar(v) for v in value):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def json_text(value: Any) -> str:
    """Compact JSON, for values inside sentences (history changes, event details)."""
    return orjson.dumps(value).decode()


def emit_json(data: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def emit_yaml(data: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def emit_document(data: Any, fmt: str, out: TextIO | None = None) -> bool:
    """Print ``data`` whole when ``fmt`` is json or yaml; False for a table."""
    if fmt == "json":
        emit_json(data, out)
    elif fmt == "yaml":
        emit_yaml(data, out)
    else:
        return False
    return True


def _columns(columns: Sequence[str | Column]) -> list[Column]:
    return [c if isinstance(c, Column) else path_column(c) for c in columns]


def table_lines(rows: Iterable[dict[str, Any]], columns: Sequence[str | Column]) -> list[str]:
    """Aligned lines: a header, then one line per row."""
    cols = _columns(columns)
    cells = [[cell(c.get(row)) for c in cols] for row in rows]
    widths = [max([len(c.header)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.header.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return lines


def emit_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str | Column], out: TextIO | None = None
) -> None:
    (out or sys.stdout).write("".join(line + "\n" for line in table_lines(rows, columns)))


def emit_record(record: dict[str, Any], fields: Sequence[str | Column], out: TextIO) -> None:
    """One object as ``FIELD  value`` lines, for reading a single item."""
    cols = _columns(fields)
    width = max(len(c.header) for c in cols)
    out.write("".join(f"{c.header.ljust(width)}  {cell(c.get(record))}\n" for c in cols))


def page_hint(data: Any, err: TextIO | None = None) -> None:
    """``more: --cursor X`` on stderr when a list page says there is a next one."""
    cursor = data.get("next_cursor") if isinstance(data, dict) else None
    if cursor:
        (err or sys.stderr).write(f"more: --cursor {cursor}\n")


def emit(data: Any, fmt: str, columns: Sequence[str | Column], out: TextIO | None = None) -> None:
    """A list page, a single object, or None, in the chosen format."""
    if emit_document(data, fmt, out) or data is None:
        return
    rows = data["items"] if isinstance(data, dict) and "items" in data else [data]
    emit_table(rows, columns, out)
    page_hint(data)
