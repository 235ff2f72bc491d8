"""A YAML writer for the files imports make: block style, every string double-quoted.

PyYAML's representer (in Python even with libyaml's emitter) takes most of a minute
for the file of ten thousand jobs; the values here are only JSON's (dicts with text
keys, lists, text, numbers, booleans, null), which a few lines can write safely: a
double-quoted YAML scalar takes JSON's escapes, and a float always gets a ``.`` so
that YAML 1.1 readers (PyYAML) read ``1e+16`` as a number, not as text.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}
# what JSON leaves raw but YAML reads as a line break or refuses as not printable
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


def dump(document: dict[str, Any]) -> str:
    """``document`` as block YAML that ``yaml.safe_load`` reads back equal."""
    lines: list[str] = []
    _mapping(document, "", lines)
    return "\n".join(lines) + "\n"


def _quoted(text: str) -> str:
    try:
        quoted = orjson.dumps(text).decode()
    except orjson.JSONEncodeError:  # a lone surrogate, which orjson refuses
        quoted = json.dumps(text, ensure_ascii=False)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _key(key: str) -> str:
    plain = _PLAIN_KEY.match(key) and key.lower() not in _RESERVED
    return key if plain else _quoted(key)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no JSON form")
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        return text if "." in mantissa else f"{mantissa}.0{e}{exponent}"
    if isinstance(value, str):
        return _quoted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _nested(value: Any) -> bool:
    return isinstance(value, dict | list) and bool(value)


def _mapping(value: dict[str, Any], indent: str, lines: list[str]) -> None:
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"key {key!r} is not text")
        if _nested(item):
            lines.append(f"{indent}{_key(key)}:")
            _block(item, indent + "  ", lines)
        else:
            lines.append(f"{indent}{_key(key)}: {_inline(item)}")


def _block(value: Any, indent: str, lines: list[str]) -> None:
    if isinstance(value, dict):
        _mapping(value, indent, lines)
        return
    for item in value:
        if isinstance(item, dict) and item:
            start = len(lines)
            _mapping(item, indent + "  ", lines)
            lines[start] = f"{indent}- {lines[start][len(indent) + 2 :]}"
        elif _nested(item):
            lines.append(f"{indent}-")
            _block(item, indent + "  ", lines)
        else:
            lines.append(f"{indent}- {_inline(item)}")


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)
