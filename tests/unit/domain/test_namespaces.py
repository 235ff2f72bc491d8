"""Namespaces: internal ids, and which namespace a request acts in."""

from __future__ import annotations

import pytest

from service.domain import namespaces as ns
from service.domain.ids import is_valid_id
from service.domain.schedule import ScheduleConfig


@pytest.mark.parametrize(
    ("namespace", "ident", "internal"),
    [("default", "nightly", "nightly"), ("team-a", "nightly", "team-a/nightly")],
)
def test_ids_are_bare_in_default_and_prefixed_elsewhere(
    namespace: str, ident: str, internal: str
) -> None:
    assert ns.qualify(namespace, ident) == internal
    assert ns.split(internal) == (namespace, ident)
    assert ns.namespace_of(internal) == namespace


def test_the_separator_is_in_no_id_so_an_internal_id_is_never_a_bare_one() -> None:
    assert not is_valid_id(ns.qualify("team-a", "nightly"))
    assert is_valid_id("team-a.nightly_1")
    assert ns.split("team-a.nightly_1") == ("default", "team-a.nightly_1")


CHOICES = [
    # header, token's namespaces (None: no token asked for), namespace
    (None, None, "default"),
    ("team-a", None, "team-a"),
    (None, ("default",), "default"),
    (None, ("team-a", "default"), "default"),
    (None, ("team-a",), "team-a"),
    ("team-a", ("default", "team-a"), "team-a"),
    ("default", ("default",), "default"),
]


@pytest.mark.parametrize(("named", "token", "chosen"), CHOICES)
def test_the_namespace_a_request_acts_in(
    named: str | None, token: tuple[str, ...] | None, chosen: str
) -> None:
    assert ns.choose(named, token) == chosen


@pytest.mark.parametrize(
    ("named", "token"),
    [("team-b", ("team-a",)), ("team-a", ("default",)), (None, ("team-a", "team-b"))],
)
def test_a_namespace_the_token_is_not_for_is_refused(
    named: str | None, token: tuple[str, ...]
) -> None:
    with pytest.raises(ns.NamespaceRefused):
        ns.choose(named, token)


@pytest.mark.parametrize("named", ["", "a/b", "-x", "x" * 129, "é"])
def test_a_header_that_is_no_namespace_name_is_bad_input(named: str) -> None:
    with pytest.raises(ns.BadNamespace):
        ns.choose(named, None)
    with pytest.raises(ns.BadNamespace):
        ns.choose(named, ("default",))


NOW = 1_768_348_800_000  # 2026-01-14T00:00:00Z


def config(spec: dict[str, object], catchup_max: int = 100) -> ScheduleConfig:
    return ScheduleConfig.model_validate(
        {"workflow_id": "scan", "spec": spec, "policy": {"catchup_max": catchup_max}}
    )


def test_the_shortest_gap_of_a_spec_counts_its_rare_close_fires() -> None:
    # 00:00 and 00:01 on the first of each month: a minute apart, whatever the rest
    monthly = config({"cron": ["0,1 0 1 * *"]}).spec
    assert ns.shortest_gap(monthly, NOW) == 60_000
    assert ns.shortest_gap(config({"intervals": [{"every": "90s"}]}).spec, NOW) == 90_000


def test_a_quota_refuses_a_spec_too_often_and_a_catchup_too_large() -> None:
    quota = ns.Quota(min_interval_ms=300_000, max_catchup=10)
    assert ns.over_quota("team-a", quota, config({"cron": ["*/5 * * * *"]}, 10), NOW) == []
    found = dict(ns.over_quota("team-a", quota, config({"cron": ["* * * * *"]}, 11), NOW))
    assert set(found) == {"spec", "policy.catchup_max"}
    assert "1m" in found["spec"] and "5m" in found["spec"] and "team-a" in found["spec"]
    assert "10" in found["policy.catchup_max"]
    assert ns.over_quota("team-a", ns.Quota(), config({"cron": ["* * * * *"]}, 10_000), NOW) == []


def test_a_namespace_at_its_maximum_of_schedules_takes_no_more() -> None:
    assert ns.schedules_full("default", ns.Quota(max_schedules=2), 1) is None
    assert "2" in (ns.schedules_full("default", ns.Quota(max_schedules=2), 2) or "")
    assert ns.schedules_full("default", ns.Quota(), 10**6) is None


def test_an_internal_id_is_a_bare_one_or_two_valid_ids_around_the_separator() -> None:
    from service.domain.ids import is_internal_id

    assert is_internal_id("scan") and is_internal_id("acme/scan")
    for bad in ("acme/", "/scan", "acme/scan/x", "-a/scan", "acme/-scan", ""):
        assert not is_internal_id(bad), bad


def test_a_schedule_keeps_a_qualified_workflow_id_but_a_client_sends_a_bare_one() -> None:
    from service.domain.types import CLIENT_INPUT

    body = {"workflow_id": "acme/scan", "spec": {"cron": ["0 2 * * *"]}}
    assert ScheduleConfig.model_validate(body).workflow_id == "acme/scan"
    with pytest.raises(ValueError):
        ScheduleConfig.model_validate(body, context=CLIENT_INPUT)
    with pytest.raises(ValueError):
        ScheduleConfig.model_validate({**body, "workflow_id": "acme/scan/x"})
    bare = ScheduleConfig.model_validate({**body, "workflow_id": "scan"}, context=CLIENT_INPUT)
    assert bare.workflow_id == "scan"


def test_an_internal_id_is_local_only_to_its_own_namespace() -> None:
    assert ns.local("acme/scan", "acme") == "scan"
    assert ns.local("acme/scan", ns.DEFAULT) is None
    assert ns.local("scan", ns.DEFAULT) == "scan"
    assert ns.local("scan", "acme") is None
    assert ns.prefix(ns.DEFAULT) == "" and ns.prefix("acme") == "acme/"


def test_errors_name_resources_by_the_id_a_client_knows() -> None:
    from service import errors

    assert errors.ID_SEPARATOR == ns.SEPARATOR
    assert str(errors.ScheduleNotFound(ns.qualify("acme", "nightly"))) == (
        "schedule 'nightly' does not exist"
    )
    used = errors.WorkflowInUse(ns.qualify("acme", "scan"), [ns.qualify("acme", "a")])
    assert str(used) == "workflow 'scan' is used by schedules: a"
