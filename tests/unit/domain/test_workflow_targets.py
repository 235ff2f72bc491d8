"""A workflow whose webhook URL names a refused address literally is refused when defined."""

from __future__ import annotations

import pytest

from service.domain import workflow as wf
from service.domain.addresses import PUBLIC_ONLY, OutboundPolicy
from service.errors import InvalidInput


def hook(url: str) -> wf.WorkflowConfig:
    return wf.WorkflowConfig.model_validate({"target": {"type": "http", "url": url}})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "https://[::1]/hook",
        "http://[::ffff:127.0.0.1]:80/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://2130706433/",
        "http://user:pw@192.168.1.1:8443/x?y=1",
    ],
)
def test_a_literal_refused_address_is_refused_naming_target_url(url: str) -> None:
    with pytest.raises(InvalidInput) as err:
        wf.decide(None, wf.PutWorkflow("w", hook(url)))
    [error] = err.value.errors
    assert error.field == "target.url"
    assert "refused; set CRONSTREAM_ALLOW_PRIVATE_TARGETS=1" in error.message


def test_an_update_to_a_refused_address_is_refused_too() -> None:
    state = wf.evolve(None, "w", wf.WorkflowCreated(workflow=hook("https://hooks.example.com/")))
    with pytest.raises(InvalidInput):
        wf.decide(state, wf.PutWorkflow("w", hook("http://127.0.0.1/"), PUBLIC_ONLY))


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x", "http://localhost:9000/", "http://93.184.216.34/"]
)
def test_names_and_public_addresses_pass(url: str) -> None:
    [created] = wf.decide(None, wf.PutWorkflow("w", hook(url)))
    assert isinstance(created, wf.WorkflowCreated)


def test_the_policy_lifts_it() -> None:
    allowed = OutboundPolicy.parse(allowlist=["127.0.0.1/32"])
    assert wf.decide(None, wf.PutWorkflow("w", hook("http://127.0.0.1:9/"), allowed))
    everything = OutboundPolicy.parse(allow_private=True)
    assert wf.decide(None, wf.PutWorkflow("w", hook("http://10.0.0.1/"), everything))
    with pytest.raises(InvalidInput):
        wf.decide(None, wf.PutWorkflow("w", hook("http://127.0.0.2:9/"), allowed))


def test_workflows_defined_before_still_load() -> None:
    # events are not commands: a workflow once allowed evolves as it was recorded
    state = wf.evolve(None, "w", wf.WorkflowCreated(workflow=hook("http://127.0.0.1:9/")))
    assert state is not None and state.config.target.type == "http"
    assert wf.decide(state, wf.DeleteWorkflow("w"))
