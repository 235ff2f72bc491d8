"""Reading schedule files: what validates, and errors that name file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.manifests.files import InvalidFiles, dump_yaml, load_files

GOOD = """\
workflows:
  - id: billing
    target: {type: http, url: https://billing.example.com/run}
schedules:
  - id: nightly
    workflow_id: billing
    spec:
      cron: ["0 2 * * *"]
      start_at: 2026-01-01T00:00:00Z
    policy: {overlap: buffer_one}
    paused: true
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def errors_of(*paths: Path) -> list[str]:
    with pytest.raises(InvalidFiles) as caught:
        load_files(paths)
    return [str(e) for e in caught.value.errors]


def test_a_directory_is_read_with_sources_relative_to_it(tmp_path: Path) -> None:
    write(tmp_path, "team/a.yaml", GOOD)
    write(tmp_path, ".hidden/b.yaml", "schedules: [1]")  # hidden: not read
    write(tmp_path, "notes.txt", "not yaml: [")
    manifest = load_files([tmp_path])
    assert manifest.sources == ["team/a.yaml"]
    assert manifest.whole_dirs
    [workflow] = manifest.workflows
    [schedule] = manifest.schedules
    assert (workflow.id, workflow.source, workflow.line) == ("billing", "team/a.yaml", 2)
    assert (schedule.id, schedule.paused, schedule.line) == ("nightly", True, 5)
    assert schedule.config.policy.overlap == "buffer_one"
    # an unquoted instant stays text, which the model reads as RFC 3339
    assert schedule.config.spec.start_at == 1_767_225_600_000


def test_a_file_is_named_by_its_name(tmp_path: Path) -> None:
    path = write(tmp_path, "deep/a.yaml", GOOD)
    manifest = load_files([path])
    assert manifest.sources == ["a.yaml"] and not manifest.whole_dirs


def test_errors_name_file_line_and_column_of_the_value(tmp_path: Path) -> None:
    write(
        tmp_path,
        "bad.yaml",
        """\
schedules:
  - id: one
    workflow_id: billing
    spec:
      cron: ["0 99 * * *"]
    policy: {overlap: sometimes}
    bogus: 1
  - workflow_id: billing
    spec: {cron: ["* * * * *"]}
""",
    )
    assert errors_of(tmp_path) == [
        "bad.yaml:5:14: spec.cron.0: hour field: 99 is out of range 0-23",
        "bad.yaml:6:23: policy.overlap: Input should be 'skip', 'buffer_one', 'buffer_all', "
        "'cancel_other', 'terminate_other' or 'allow_all'",
        "bad.yaml:7:12: bogus: Extra inputs are not permitted",
        "bad.yaml:8:5: id: required: an id such as 'billing-nightly'",
    ]


def test_syntax_errors_sections_and_shapes(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "schedules:\n  - id: x\n    spec: [\n")
    write(tmp_path, "b.yaml", "jobs: []\nschedules: {id: x}\n")
    write(tmp_path, "c.yaml", "- 1\n- 2\n")
    write(tmp_path, "d.yaml", "workflows:\n  - 3\n")
    write(tmp_path, "e.yaml", "")  # empty: declares nothing, and is no error
    found = errors_of(tmp_path)
    assert found[0].startswith("a.yaml:4:1: invalid YAML: ")
    assert found[1:] == [
        "b.yaml:1:1: jobs: unknown section: expected one of workflows, schedules",
        "b.yaml:2:12: schedules: must be a list",
        "c.yaml:1:1: a file must be a mapping with workflows: and schedules:",
        "d.yaml:2:5: workflows[0]: must be a mapping",
    ]


def test_an_id_declared_twice_is_an_error_at_the_second(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(
        tmp_path,
        "b.yaml",
        "schedules:\n  - id: nightly\n    workflow_id: w\n    spec: {cron: ['0 * * * *']}\n",
    )
    assert errors_of(tmp_path) == [
        "b.yaml:2:1: id: schedule 'nightly' is declared twice (first at a.yaml:5)"
    ]


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_files([tmp_path / "nope.yaml"])


def test_dump_yaml_writes_what_load_files_reads(tmp_path: Path) -> None:
    text = dump_yaml(
        [{"id": "w", "target": {"type": "python", "handler": "jobs.x:run"}}],
        [
            {
                "id": "s",
                "workflow_id": "w",
                "spec": {"intervals": [{"every": "90s"}]},
                "input": {"n": 1},
            }
        ],
    )
    manifest = load_files([write(tmp_path, "out.yaml", text)])
    assert [w.id for w in manifest.workflows] == ["w"]
    [schedule] = manifest.schedules
    assert schedule.config.spec.intervals[0].every == 90_000 and schedule.config.input == {"n": 1}


def test_a_key_given_twice_is_an_error_not_the_last_one_silently(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        "schedules:\n  - id: s\n    workflow_id: w\n    spec: {cron: ['0 2 * * *']}\n"
        "    spec: {cron: ['0 3 * * *']}\n    policy: {overlap: skip, overlap: allow_all}\n",
    )
    assert errors_of(tmp_path) == [
        "a.yaml:5:5: spec: given twice (first at line 4)",
        "a.yaml:6:29: overlap: given twice (first at line 6)",
    ]
