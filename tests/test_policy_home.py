"""Overlap, catch-up and run-outcome rules live in the domain, not in the loops or handlers.

The ticker, the worker and the API read, call the domain and the store, and count.
This test reads their source (no import) and fails on what would be a rule of their
own: a policy value compared or chosen by name, or a call to the domain's building
blocks of a rule (spec iteration, jitter, retry timing) instead of to the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from service.domain.policies import CatchupPolicy, OverlapPolicy
from service.domain.runs import RunOutcome

ROOT = Path(__file__).resolve().parent.parent
LOOPS_AND_HANDLERS = ("service/ticker", "service/worker", "service/api")

POLICY_VALUES = {str(v) for v in (*OverlapPolicy, *CatchupPolicy, *RunOutcome)} - {
    # words that are also ordinary English in messages and field names
    "none",
    "all",
    "retry",
    "latest",
    "oldest",
    "skip",
    "succeeded",
    "failed",
    "cancelled",
}
POLICY_ENUMS = {"OverlapPolicy", "CatchupPolicy", "RunOutcome"}
RULE_PARTS = {
    "iter_fire_times",
    "jittered_time",
    "should_retry",
    "retry_delay_ms",
    "backoff_ms",
    "ON_TIME_GRACE_MS",
}


def sources() -> list[Path]:
    return sorted(p for d in LOOPS_AND_HANDLERS for p in (ROOT / d).rglob("*.py"))


def rules_in(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Constant) and node.value in POLICY_VALUES:
            found.append(f"{where}: the policy value {node.value!r}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in POLICY_ENUMS:
                found.append(f"{where}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in RULE_PARTS:
            found.append(f"{where}: {node.id}")
        elif isinstance(node, ast.alias) and node.name.split(".")[-1] in RULE_PARTS:
            found.append(f"{where}: imports {node.name}")
    return found


def test_the_scan_sees_a_rule() -> None:
    snippet = (
        "from service.domain.retry import should_retry\n"
        "if overlap == 'buffer_one' or OverlapPolicy.SKIP:\n"
        "    delay = iter_fire_times(spec)\n"
    )
    assert len(rules_in(snippet, "example.py")) == 4


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_policy_outside_the_domain(path: Path) -> None:
    assert rules_in(path.read_text(), str(path.relative_to(ROOT))) == []
