"""The README's "See it fire in 30 seconds" runs as written, against a real ``cronstream serve``.

The service is started with the quick start's own serve command (its install steps
left out, a free port added), in a directory laid out as a clone, so its embedded
Redis lives there. The section's ``sh`` blocks are typed into one bash, as a user
types them into a second terminal: the first, then (once the receiver has printed
two deliveries) the rest. The test sets only what the README leaves to the
environment: ``CRONSTREAM_URL`` and ``RECEIVER_PORT``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from service.store.embedded import free_port
from tests.process import ROOT, env, http_status, wait_until

pytestmark = pytest.mark.slow

SECTION = "See it fire in 30 seconds"
# a delivery the receiver printed: its first line and the indented lines under it
DELIVERY = re.compile(r"^delivery \d+: POST /hook\n(?:  .*\n)*", re.MULTILINE)
HEADER = re.compile(r"^  ([a-z-]+): ", re.MULTILINE)


def blocks(markdown: str, heading: str, language: str) -> list[str]:
    """The fenced blocks of one language in the section under a ``##`` heading."""
    start = markdown.index(f"\n## {heading}\n")
    end = markdown.find("\n## ", start + 1)
    section = markdown[start : end if end != -1 else len(markdown)]
    return re.findall(rf"^```{language}\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)


def test_blocks_are_read_from_their_section_only() -> None:
    page = "## A\n```sh\na\n```\n## B\n```sh\nb1\n```\n```text\nt\n```\n```sh\nb2\n```\n## C\n"
    assert blocks(page, "B", "sh") == ["b1\n", "b2\n"]
    assert blocks(page, "B", "text") == ["t\n"]


def deliveries(output: str) -> list[str]:
    """The receiver's deliveries in a terminal's output."""
    return DELIVERY.findall(output)


def a_clone(tmp_path: Path) -> Path:
    """A directory laid out as the README's commands expect: examples/ and .venv/."""
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "examples").symlink_to(ROOT / "examples")
    (clone / ".venv").symlink_to(Path(sys.prefix))
    return clone


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def without_opt_ins(environment: dict[str, str]) -> dict[str, str]:
    """The environment without the suite's own opt-ins: what lets the example's webhooks
    reach its receiver on 127.0.0.1 must be in the README's command."""
    return {k: v for k, v in environment.items() if k != "CRONSTREAM_ALLOW_PRIVATE_TARGETS"}


def serve_command(readme: str) -> str:
    """The quick start's command that runs the service, without the steps that install it."""
    command = blocks(readme, "Quick start", "sh")[0].strip().split("&&")[-1].strip()
    assert "cronstream serve" in command, command
    return command


class QuickStart:
    """The quick start's serve command, running in ``clone`` on a free port."""

    def __init__(self, command: str, clone: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = clone.parent / "serve.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                ["bash", "-c", f"exec {command} --port {self.port}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=clone,
                env=without_opt_ins(env()),
            )

    def wait_healthy(self, timeout_s: float = 30) -> QuickStart:
        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"serve exited with {self.process.returncode}:\n{self.output()}"
                )
            return http_status(self.url + "/healthz") == 200

        wait_until(up, timeout_s, "serve to answer /healthz")
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout_s: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_s)
        return int(self.process.returncode)


def test_the_30_second_example_fires_as_written(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    setup, *rest = blocks(readme, SECTION, "sh")
    assert rest, "the section shows how to look and how to stop"
    shown = blocks(readme, SECTION, "text")[0]
    clone = a_clone(tmp_path)

    service = QuickStart(serve_command(readme), clone).wait_healthy()
    terminal = tmp_path / "terminal.txt"
    extra = {"CRONSTREAM_URL": service.url, "RECEIVER_PORT": str(free_port())}
    with open(terminal, "wb") as out:
        shell = subprocess.Popen(
            ["bash", "-e", "-s"],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=clone,
            env=env(**extra),
            start_new_session=True,  # its own process group, with what it starts
        )
    assert shell.stdin is not None

    def printed() -> str:
        return terminal.read_text(errors="replace")

    def two_deliveries() -> bool:
        if shell.poll() is not None:
            raise AssertionError(f"bash exited with {shell.returncode}:\n{printed()}")
        return len(deliveries(printed())) >= 2

    try:
        shell.stdin.write(setup.encode())
        shell.stdin.flush()
        wait_until(two_deliveries, 30, "two deliveries at the receiver")
        shell.stdin.write("".join(rest).encode())
        shell.stdin.close()
        assert shell.wait(timeout=30) == 0, printed()
        # the last block stopped the receiver: nothing the example started is left
        wait_until(lambda: group_gone(shell.pid), 10, "the receiver to stop")
    finally:
        if not shell.stdin.closed:
            shell.stdin.close()
        if not group_gone(shell.pid):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(timeout=10)
        code = service.stop()

    first, second = deliveries(printed())[:2]
    assert HEADER.findall(first) == HEADER.findall(shown)  # what the README says you see
    for delivery in (first, second):
        assert "  cronstream-schedule-id: hello\n" in delivery
        assert "  cronstream-trigger: schedule\n" in delivery
        assert '  body: {"greeting":"hello"}\n' in delivery
    times = [re.findall(r"cronstream-nominal-time: (\S+)", d)[0] for d in (first, second)]
    assert times[0] < times[1]
    assert re.search(r"^run_\S+ +hello +hello +schedule +succeeded ", printed(), re.MULTILINE)
    assert "deleted schedule hello" in printed()
    assert "fired 1 (hello)" in service.output()
    # a clean stop, which stops the embedded Redis the quick start ran in the clone
    assert code == 0, service.output()
    assert (clone / ".cronstream").is_dir()


def test_ci_runs_the_quick_start_test_command() -> None:
    """.ci/run calls the README's test command."""
    readme = (ROOT / "README.md").read_text()
    suite = blocks(readme, "Quick start", "sh")[1]
    assert suite.strip() in (ROOT / ".ci" / "run").read_text().splitlines()
