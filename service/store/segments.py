"""The archive's files: gzip JSON Lines segments, each committed by a manifest.

A segment ``p0000-<ms>-<seq>.jsonl.gz`` holds a run of consecutive log entries of
one partition, one JSON object a line: ``{"id": ..., <every stream field>: ...}``
with the fields exactly as stored (strings). Its manifest
``p0000-<ms>-<seq>.manifest.json`` records the range, the count, the chain hashes
at both ends and the segment's sha256. The manifest is written last (temporary
file, fsync, rename, fsync of the directory), so a segment without a manifest is
an interrupted write: readers ignore it and the next archive run replaces it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from service.store.eventstore import parse_position

FORMAT = 1
SEGMENT_SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"
TMP_SUFFIX = ".tmp"
READ_CHUNK = 1 << 20


class ArchiveError(RuntimeError):
    """The archive directory cannot be used as it is (the message says why)."""


@dataclass(frozen=True)
class Manifest:
    partition: int
    first_id: str
    last_id: str
    count: int
    first_prev: str
    last_hash: str
    segment: str
    sha256: str
    size: int
    created_at: str
    format: int = FORMAT

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: bytes, where: Path) -> Manifest:
        try:
            data: dict[str, Any] = orjson.loads(raw)
            return cls(**data)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise ArchiveError(f"{where}: not a segment manifest ({exc})") from None


def stem(partition: int, first_id: str) -> str:
    """File name stem of the segment starting at ``first_id`` (sorts in log order)."""
    ms, seq = parse_position(first_id)
    return f"p{partition:04d}-{ms:015d}-{seq:010d}"


def segment_path(directory: Path, partition: int, first_id: str) -> Path:
    return directory / (stem(partition, first_id) + SEGMENT_SUFFIX)


def manifest_path(directory: Path, partition: int, first_id: str) -> Path:
    return directory / (stem(partition, first_id) + MANIFEST_SUFFIX)


def manifests(directory: Path, partition: int) -> list[Manifest]:
    """The committed segments of a partition, in log order."""
    if not directory.is_dir():
        return []
    found = [
        Manifest.from_json(path.read_bytes(), path)
        for path in directory.glob(f"p{partition:04d}-*{MANIFEST_SUFFIX}")
    ]
    return sorted(found, key=lambda m: parse_position(m.first_id))


def partitions(directory: Path) -> list[int]:
    """Partitions that have at least one committed segment in ``directory``."""
    if not directory.is_dir():
        return []
    return sorted({int(p.name[1:5]) for p in directory.glob(f"p*{MANIFEST_SUFFIX}")})


def iter_lines(path: Path) -> Iterator[tuple[int, str, dict[str, str]]]:
    """(line number from 1, entry id, stored fields) of every line of a segment."""
    with gzip.open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record: dict[str, str] = orjson.loads(line)
                entry_id = record.pop("id")
            except (orjson.JSONDecodeError, KeyError, AttributeError) as exc:
                raise ArchiveError(f"{path.name} line {number}: unreadable ({exc})") from None
            yield number, entry_id, record


def encode_line(entry_id: str, fields: dict[str, str]) -> bytes:
    return orjson.dumps({"id": entry_id, **fields}) + b"\n"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Commit a segment: its manifest appears whole or not at all."""
    final = manifest_path(directory, manifest.partition, manifest.first_id)
    tmp = final.with_name(final.name + TMP_SUFFIX)
    with open(tmp, "wb") as handle:
        handle.write(manifest.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    fsync_dir(directory)
    return final


def uncommitted(directory: Path, partition: int) -> list[Path]:
    """Files of interrupted writes: segments with no manifest, temporary files."""
    if not directory.is_dir():
        return []
    committed = {m.segment for m in manifests(directory, partition)}
    prefix = f"p{partition:04d}-"
    return sorted(
        path
        for path in directory.iterdir()
        if path.name.startswith(prefix)
        and (
            path.name.endswith(TMP_SUFFIX)
            or (path.name.endswith(SEGMENT_SUFFIX) and path.name not in committed)
        )
    )


class SegmentWriter:
    """Writes one segment: gzip JSON Lines, then closed and fsynced in two steps."""

    def __init__(self, path: Path, level: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._raw = open(path, "wb")  # closed by sync() or abort()
        self._gzip = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=level, mtime=0)

    def write(self, lines: list[bytes]) -> None:
        self._gzip.write(b"".join(lines))

    def finish(self) -> None:
        """Write the gzip trailer (the data may still sit in the page cache)."""
        self._gzip.close()
        self._raw.flush()

    def sync(self) -> None:
        """fsync the file and its directory, then close it."""
        os.fsync(self._raw.fileno())
        self._raw.close()
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        self._gzip.close()
        self._raw.close()


def as_str_fields(fields: dict[Any, Any]) -> dict[str, str]:
    """Stream fields as stored, as strings (bytes decoded as UTF-8)."""
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in fields.items()
    }
