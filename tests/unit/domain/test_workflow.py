"""The Workflow aggregate and its config validation, without Redis."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.domain import workflow as wf
from service.errors import WorkflowNotFound

NONE = wf.WorkflowConfig.model_validate({"target": {"type": "none"}})


def test_put_creates_then_updates_only_on_change() -> None:
    [created] = wf.decide(None, wf.PutWorkflow("w", NONE))
    assert isinstance(created, wf.WorkflowCreated)
    state = wf.evolve(None, "w", created)
    assert wf.decide(state, wf.PutWorkflow("w", NONE)) == []
    renamed = NONE.model_copy(update={"name": "x"})
    [updated] = wf.decide(state, wf.PutWorkflow("w", renamed))
    assert isinstance(updated, wf.WorkflowUpdated) and updated.changed == ["name"]


def test_delete() -> None:
    with pytest.raises(WorkflowNotFound):
        wf.decide(None, wf.DeleteWorkflow("w"))
    state = wf.evolve(None, "w", wf.WorkflowCreated(workflow=NONE))
    [deleted] = wf.decide(state, wf.DeleteWorkflow("w"))
    gone = wf.evolve(state, "w", deleted)
    assert gone is not None and gone.deleted
    assert isinstance(wf.decide(gone, wf.PutWorkflow("w", NONE))[0], wf.WorkflowCreated)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target": {"type": "http", "url": "ftp://x"}}, ("target", "http", "url")),
        ({"target": {"type": "python", "handler": "x"}}, ("target", "python", "handler")),
        ({"target": {"type": "none"}, "input_schema": {"type": 5}}, ("input_schema",)),
        ({"target": {"type": "none"}, "retry": {"backoff": 0.5}}, ("retry", "backoff")),
    ],
)
def test_invalid_configs_name_the_field(body: dict[str, object], field: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as err:
        wf.WorkflowConfig.model_validate(body)
    assert err.value.errors()[0]["loc"] == field
