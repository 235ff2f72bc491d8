"""Reading files of workflows and schedules: YAML in, validated declarations out.

A file is a YAML mapping with two optional lists, ``workflows`` and ``schedules``.
Their items are the bodies of ``PUT /v1/workflows/{id}`` and ``POST /v1/schedules``
with a required ``id``, validated by the same models (``WorkflowPut``,
``ScheduleCreate``), so a file accepts what the API accepts and nothing else::

    workflows:
      - id: billing
        target: {type: http, url: https://billing.example.com/run}
    schedules:
      - id: billing-nightly
        workflow_id: billing
        spec: {cron: ["0 2 * * *"], timezone: Europe/Paris}
        policy: {overlap: skip}
        input: {full: true}

Every error names the file, the line and the column of the value at fault
(``schedules/billing.yaml:7:15: spec.cron.0: ...``); ``load_files`` reads every file
first and raises ``InvalidFiles`` with all the errors it found, so a caller that
applies only what loaded cleanly changes nothing when one file is wrong.

Only the ``default`` namespace is declared by files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import BaseModel, ValidationError

from service.api.models import ScheduleCreate, WorkflowPut
from service.domain.ids import is_valid_id
from service.domain.schedule import ScheduleConfig
from service.domain.types import CLIENT_INPUT
from service.domain.workflow import WorkflowConfig
from service.errors import CronstreamError
from service.manifests import yaml_nodes

SUFFIXES = (".yaml", ".yml")
SECTIONS = ("workflows", "schedules")
_UNION_TAGS = frozenset({"http", "python", "none", "function-after[...]"})


@dataclass(frozen=True)
class FileError:
    """One problem in one file, where it is (1-based line and column)."""

    path: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.column}"
        named = f"{self.field}: " if self.field else ""
        return f"{where}: {named}{self.message}"


class InvalidFiles(CronstreamError, ValueError):
    """Files that do not validate; ``errors`` lists every problem found, in file order."""

    def __init__(self, errors: list[FileError]) -> None:
        self.errors = errors
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{errors[0]}{more}" if errors else "invalid files")


@dataclass(frozen=True)
class WorkflowDecl:
    """A workflow as a file declares it: ``data`` is its validated config as JSON."""

    id: str
    data: dict[str, Any]
    source: str
    line: int

    @cached_property
    def config(self) -> WorkflowConfig:
        return WorkflowConfig.model_validate(self.data)


@dataclass(frozen=True)
class ScheduleDecl:
    """A schedule as a file declares it: ``data`` is its validated config as JSON,
    ``paused`` its declared status."""

    id: str
    data: dict[str, Any]
    paused: bool
    note: str
    source: str
    line: int

    @cached_property
    def config(self) -> ScheduleConfig:
        return ScheduleConfig.model_validate(self.data)


@dataclass
class Manifest:
    """Everything a set of files declares.

    ``sources`` are the files read, each named relative to the directory given (or
    to its own directory when a file was given): that name is what the events record.
    ``whole_dirs`` is true when every path given was a directory, so a resource
    managed by files and missing from all of them may be pruned whatever its source.
    """

    workflows: list[WorkflowDecl] = field(default_factory=list)
    schedules: list[ScheduleDecl] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    whole_dirs: bool = True


def find_files(path: Path) -> tuple[Path, list[Path]]:
    """The root that sources are named from, and the YAML files under ``path``
    (itself if a file; else ``*.yaml``/``*.yml`` below it, hidden ones left out)."""
    if path.is_dir():
        found = [
            p
            for p in path.rglob("*")
            if p.suffix in SUFFIXES
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        ]
        return path, sorted(found)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    return path.parent, [path]


@dataclass(frozen=True)
class Source:
    """A file's name (as events record it) and its bytes."""

    name: str
    text: bytes

    @cached_property
    def digest(self) -> str:
        """Names what validating these bytes with this code gives (see ``load_sources``)."""
        return hashlib.sha256(code_digest() + self.text).hexdigest()


def read_sources(paths: Iterable[Path | str]) -> tuple[list[Source], bool]:
    """The files under ``paths`` and whether every path given was a directory."""
    sources, whole_dirs = [], True
    for given in paths:
        root, files = find_files(Path(given))
        whole_dirs = whole_dirs and Path(given).is_dir()
        sources += [Source(p.relative_to(root).as_posix(), p.read_bytes()) for p in files]
    return sources, whole_dirs


def load_files(paths: Iterable[Path | str]) -> Manifest:
    """Read and validate every file under ``paths``; InvalidFiles lists all errors."""
    sources, whole_dirs = read_sources(paths)
    manifest, _ = load_sources(sources, whole_dirs)
    return manifest


def load_sources(
    sources: Iterable[Source], whole_dirs: bool, known: Mapping[str, bytes] | None = None
) -> tuple[Manifest, dict[str, bytes]]:
    """Validate ``sources`` (InvalidFiles lists all errors). ``known`` maps a source's
    digest to what validating the same bytes gave before (a file's declarations as
    JSON): such a file is not parsed again. Returns the manifest and the results of
    the files that were parsed and valid, by digest, for the next call's ``known``."""
    manifest, errors, fresh = Manifest(whole_dirs=whole_dirs), [], {}
    for source in sources:
        manifest.sources.append(source.name)
        blob = (known or {}).get(source.digest)
        if blob is not None:
            _from_json(blob, source.name, manifest)
            continue
        part = Manifest()
        found = read_file(source.text, source.name, part)
        if not found:
            fresh[source.digest] = _to_json(part)
        errors += found
        manifest.workflows += part.workflows
        manifest.schedules += part.schedules
    errors += _duplicates(manifest)
    if errors:
        raise InvalidFiles(errors)
    return manifest, fresh


def _to_json(part: Manifest) -> bytes:
    return orjson.dumps(
        {
            "workflows": [[d.id, d.data, d.line] for d in part.workflows],
            "schedules": [[d.id, d.data, d.paused, d.note, d.line] for d in part.schedules],
        }
    )


def _from_json(blob: bytes, source: str, into: Manifest) -> None:
    data = orjson.loads(blob)
    into.workflows += [WorkflowDecl(i, d, source, line) for i, d, line in data["workflows"]]
    into.schedules += [
        ScheduleDecl(i, d, paused, note, source, line)
        for i, d, paused, note, line in data["schedules"]
    ]


@cache
def code_digest() -> bytes:
    """A digest of the code that validates files (this package, the API's models, the
    domain): a file validated by other code is validated again."""
    digest = hashlib.sha256(b"cronstream files v1\0")
    service = Path(__file__).resolve().parent.parent
    for path in [
        *sorted((service / "manifests").glob("*.py")),
        service / "api" / "models.py",
        *sorted((service / "domain").rglob("*.py")),
    ]:
        digest.update(path.read_bytes())
    return digest.digest()


def read_file(text: bytes, source: str, into: Manifest) -> list[FileError]:
    """Add what the file ``source`` (its bytes ``text``) declares to ``into``; the
    errors found, if any."""
    loaded = parse_yaml(text, source)
    if isinstance(loaded, FileError):
        return [loaded]
    node, data = loaded
    if node is None or data is None:
        return []  # an empty file declares nothing
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
        return [_at(source, node, "", "a file must be a mapping with workflows: and schedules:")]
    twice = yaml_nodes.duplicate_keys(node)
    if twice:
        return [
            _at(source, again, str(again.value), f"given twice (first at line {_line(first)})")
            for first, again in twice
        ]
    errors = [
        _at(source, key, str(key.value), f"unknown section: expected one of {', '.join(SECTIONS)}")
        for key, _ in node.value
        if key.value not in SECTIONS
    ]
    sections = {key.value: value for key, value in node.value}
    for name in SECTIONS:
        items = data.get(name)
        if items is None:
            continue
        if not isinstance(items, list):
            errors.append(_at(source, sections[name], name, "must be a list"))
            continue
        for index, item in enumerate(items):
            where = Where(source, f"{name}[{index}]", sections[name].value[index])
            errors += _item(name, item, where, into)
    return errors


def parse_yaml(text: bytes, source: str) -> tuple[yaml.Node | None, Any] | FileError:
    """The file's YAML node tree (which keeps every value's position) and its data,
    or its syntax error."""
    try:
        return yaml_nodes.load(text)
    except yaml.MarkedYAMLError as exc:
        return _yaml_error(source, exc)
    except yaml.YAMLError as exc:
        return FileError(source, 1, 1, "", f"not YAML: {exc}")


@dataclass(frozen=True)
class Where:
    """An item's file, its place in its section (``schedules[3]``) and its YAML node."""

    source: str
    name: str
    node: yaml.Node


def _item(section: str, item: Any, where: Where, into: Manifest) -> list[FileError]:
    """Validate one item of a section and add it to ``into``; its errors, if any."""
    source, node = where.source, where.node
    if not isinstance(item, dict):
        return [_at(source, node, where.name, "must be a mapping")]
    ident = item.get("id")
    if not isinstance(ident, str) or not is_valid_id(ident):
        at = _node_at(node, ("id",))
        return [_at(source, at, "id", "required: an id such as 'billing-nightly'")]
    line = node.start_mark.line + 1
    model: type[BaseModel] = WorkflowPut if section == "workflows" else ScheduleCreate
    try:
        body = model.model_validate(item, context=CLIENT_INPUT)
    except ValidationError as exc:
        return [_at(source, _node_at(node, loc), name, msg) for loc, name, msg in _problems(exc)]
    # the config fields as JSON: what the write model holds, so plans compare JSON
    if isinstance(body, WorkflowPut):
        data = body.model_dump(mode="json", exclude={"id"})
        into.workflows.append(WorkflowDecl(ident, data, source, line))
    elif isinstance(body, ScheduleCreate):
        data = body.model_dump(mode="json", exclude={"id", "paused", "note"})
        into.schedules.append(ScheduleDecl(ident, data, body.paused, body.note, source, line))
    return []


def _problems(exc: ValidationError) -> list[tuple[tuple[Any, ...], str, str]]:
    """(location, dotted field, message) of each validation error."""
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(part for part in err["loc"] if part not in _UNION_TAGS)
        message = err["msg"].removeprefix("Value error, ")
        out.append((loc, ".".join(str(part) for part in loc), message))
    return out


def _node_at(node: yaml.Node, loc: Sequence[Any]) -> yaml.Node:
    """The deepest node along ``loc`` (mapping keys, list indexes) that the file has."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = [value for key, value in node.value if key.value == str(part)]
            if not found:
                # a missing field: point at the key that holds the mapping
                return node
            node = found[-1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _at(source: str, node: yaml.Node, name: str, message: str) -> FileError:
    mark = node.start_mark
    return FileError(source, mark.line + 1, mark.column + 1, name, message)


def _yaml_error(source: str, exc: yaml.MarkedYAMLError) -> FileError:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = " ".join(part for part in (exc.context, exc.problem) if part)
    return FileError(source, line, column, "", f"invalid YAML: {problem}")


def _duplicates(manifest: Manifest) -> list[FileError]:
    """An id declared twice (in one file or two) is an error at its second place."""
    errors = []
    for kind, decls in (("workflow", manifest.workflows), ("schedule", manifest.schedules)):
        first: dict[str, tuple[str, int]] = {}
        for decl in decls:
            if decl.id in first:
                where = "{}:{}".format(*first[decl.id])
                message = f"{kind} {decl.id!r} is declared twice (first at {where})"
                errors.append(FileError(decl.source, decl.line, 1, "id", message))
            else:
                first[decl.id] = (decl.source, decl.line)
    return errors


def dump_yaml(workflows: Sequence[dict[str, Any]], schedules: Sequence[dict[str, Any]]) -> str:
    """A file that declares ``workflows`` and ``schedules`` (API bodies, each with ``id``),
    in the format ``load_files`` reads; for tools that write files for ``apply``."""
    document: dict[str, Any] = {}
    if workflows:
        document["workflows"] = list(workflows)
    if schedules:
        document["schedules"] = list(schedules)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)
