"""The staged rollout: real azure-ai-ml entities planned offline, validated before anything is sent, applied
through the OnlineEndpoints port (a recording fake here; the real adapter against a hand-written MLClient)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from shared.errors import InputError, TransientError
from shared.rollout import (
    AzureMLOnlineEndpoints,
    FakeOnlineEndpoints,
    OnlineEndpoints,
    RolloutPlanError,
    RolloutUnavailableError,
    apply,
    endpoint_step,
    plan_rollout,
    validate,
)

MODEL = "azureml:churn:4"


def _plan(**kw: Any):
    return plan_rollout("churn-ep", kw.pop("blue", "blue"), kw.pop("green", "green"), MODEL, **kw)


def test_blue_green_plan_with_mirror_is_made_of_the_expected_entities() -> None:
    plan = _plan(mirror=20, instance_type="Standard_DS2_v2", instance_count=2)

    created = plan.steps[0].as_dict()
    assert {k: created[k] for k in ("name", "endpoint_name", "model", "instance_type", "instance_count")} == {
        "name": "green",
        "endpoint_name": "churn-ep",
        "model": MODEL,
        "instance_type": "Standard_DS2_v2",
        "instance_count": 2,
    }
    assert [step.kind for step in plan.steps] == [
        "create_deployment",
        "traffic",
        "traffic",
        "traffic",
        "traffic",
    ]
    endpoint_dicts = [step.as_dict() for step in plan.steps[1:]]
    assert {d["name"] for d in endpoint_dicts} == {"churn-ep"}
    assert [(d["traffic"], d["mirror_traffic"]) for d in endpoint_dicts] == [
        ({"blue": 100, "green": 0}, {"green": 20}),
        ({"blue": 90, "green": 10}, {}),
        ({"blue": 50, "green": 50}, {}),
        ({"blue": 0, "green": 100}, {}),
    ]
    rollback = plan.rollback.as_dict()
    assert (rollback["traffic"], rollback["mirror_traffic"]) == ({"blue": 100, "green": 0}, {})
    assert validate(plan) is plan


def _sum_110(plan):
    bad = endpoint_step("churn-ep", {"blue": 90, "green": 20})
    return dataclasses.replace(plan, steps=(*plan.steps[:2], bad, *plan.steps[3:]))


def _mirror_to_live(plan):
    bad = endpoint_step("churn-ep", {"blue": 100, "green": 0}, {"blue": 10})
    return dataclasses.replace(plan, steps=(plan.steps[0], bad, *plan.steps[2:]))


@pytest.mark.parametrize(
    ("plan", "problem"),
    [
        (_sum_110(_plan()), "traffic sums to 110, not 100"),
        (_plan(steps=(10, 50, 90)), "the last traffic step must be 100, not 90"),
        (_plan(steps=(50, 10, 100)), "must be strictly increasing"),
        (_plan(steps=(0, 100)), "each in 1..100"),
        (_plan(mirror=60), "mirror 60% must be in 1..50"),
        (_mirror_to_live(_plan(mirror=10)), "mirror to 'blue', which already takes 100% live traffic"),
        (_plan(green="Green"), "green deployment name 'Green' must be lower-case"),
        (plan_rollout("ep", "blue", "green", MODEL), "at least 3 and at most 32 characters"),
        (plan_rollout("churn_ep", "blue", "green", MODEL), "must start with an upper- or lowercase letter"),
        (_plan(blue="gr-1", green="gr-1"), "blue and green are the same deployment 'gr-1'"),
    ],
    ids=[
        "sum-110",
        "last-90",
        "decreasing",
        "zero-step",
        "mirror-60",
        "mirror-live",
        "upper",
        "short",
        "bad-char",
        "same",
    ],
)
def test_invalid_plans_are_rejected_before_any_call(plan, problem: str) -> None:
    endpoints = FakeOnlineEndpoints()
    with pytest.raises(RolloutPlanError) as caught:
        apply(plan, endpoints)
    assert problem in str(caught.value)
    assert isinstance(caught.value, InputError) and caught.value.reason == "invalid_rollout"
    assert endpoints.calls == []


def test_a_mirror_to_green_while_it_takes_live_traffic_is_rejected() -> None:
    plan = _plan()
    bad = endpoint_step("churn-ep", {"blue": 50, "green": 50}, {"green": 10})
    with pytest.raises(RolloutPlanError, match="mirror to 'green', which already takes 50% live traffic"):
        validate(dataclasses.replace(plan, steps=(*plan.steps[:2], bad, plan.steps[3])))


def _summary(calls: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The recorded calls, with endpoint updates cut to (traffic, mirror_traffic) and creations to the name."""
    short = {
        "update_endpoint": lambda d: (d["traffic"], d["mirror_traffic"]),
        "create_deployment": lambda d: d["name"],
    }
    return [(op, short.get(op, lambda x: x)(arg)) for op, arg in calls]


def test_a_healthy_rollout_creates_green_mirrors_then_steps_traffic_and_keeps_blue() -> None:
    plan, endpoints = _plan(mirror=20), FakeOnlineEndpoints()
    assert isinstance(endpoints, OnlineEndpoints)

    result = apply(plan, endpoints)

    assert result.status == "completed" and result.failed_step is None
    assert result.applied == plan.steps
    assert endpoints.calls[0] == ("create_deployment", plan.steps[0].as_dict())
    assert _summary(endpoints.calls) == [
        ("create_deployment", "green"),
        ("healthy", "green"),
        ("update_endpoint", ({"blue": 100, "green": 0}, {"green": 20})),
        ("healthy", "green"),
        ("update_endpoint", ({"blue": 90, "green": 10}, {})),
        ("healthy", "green"),
        ("update_endpoint", ({"blue": 50, "green": 50}, {})),
        ("healthy", "green"),
        ("update_endpoint", ({"blue": 0, "green": 100}, {})),
        ("healthy", "green"),
    ]
    assert endpoints.traffic == {"green": 100} and endpoints.deployments == {"blue", "green"}
    assert "'blue' kept at 0% for rollback" in result.reason


def test_a_failed_health_check_rolls_back_to_blue_and_deletes_green() -> None:
    plan, endpoints = _plan(mirror=20), FakeOnlineEndpoints(unhealthy_steps={2})

    result = apply(plan, endpoints)

    assert result.status == "rolled_back" and result.failed_step == 2
    assert result.applied == plan.steps[:3]
    assert result.reason.startswith("step 2 (traffic blue=90% green=10%): 'green' unhealthy")
    assert _summary(endpoints.calls)[-4:] == [
        ("update_endpoint", ({"blue": 90, "green": 10}, {})),
        ("healthy", "green"),
        ("update_endpoint", ({"blue": 100, "green": 0}, {})),
        ("delete_deployment", "green"),
    ]
    assert endpoints.traffic == {"blue": 100} and endpoints.mirror_traffic == {}
    assert endpoints.deployments == {"blue"}


def test_an_unhealthy_new_deployment_never_gets_traffic() -> None:
    endpoints = FakeOnlineEndpoints(unhealthy={"green"})
    result = apply(_plan(), endpoints)
    assert result.failed_step == 0
    assert [op for op, _ in endpoints.calls] == [
        "create_deployment",
        "healthy",
        "update_endpoint",
        "delete_deployment",
    ]


# The real adapter against a hand-written MLClient: objects that record calls and return pollers.


class _Poller:
    def __init__(self, value: Any = None, error: Exception | None = None) -> None:
        self.value, self.error = value, error

    def result(self) -> Any:
        if self.error:
            raise self.error
        return self.value


class _Deployments:
    def __init__(self, calls: list, state: str, error: Exception | None) -> None:
        self.calls, self.state, self.error = calls, state, error

    def begin_create_or_update(self, deployment: Any) -> _Poller:
        self.calls.append(("online_deployments.begin_create_or_update", deployment.name))
        return _Poller(deployment, self.error)

    def begin_delete(self, *, name: str, endpoint_name: str) -> _Poller:
        self.calls.append(("online_deployments.begin_delete", name, endpoint_name))
        return _Poller(None, self.error)

    def get(self, *, name: str, endpoint_name: str) -> Any:
        self.calls.append(("online_deployments.get", name, endpoint_name))
        if self.error:
            raise self.error
        return type("Deployment", (), {"provisioning_state": self.state})()


class _Endpoints:
    def __init__(self, calls: list) -> None:
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        self.calls = calls
        self.live = ManagedOnlineEndpoint(name="churn-ep", auth_mode="aml_token", tags={"team": "risk"})

    def get(self, name: str) -> Any:
        self.calls.append(("online_endpoints.get", name))
        return self.live

    def begin_create_or_update(self, endpoint: Any) -> _Poller:
        self.calls.append(("online_endpoints.begin_create_or_update", endpoint._to_dict()))
        return _Poller(endpoint)


class _MLClient:
    def __init__(self, state: str = "Succeeded", error: Exception | None = None) -> None:
        self.calls: list[tuple] = []
        self.online_deployments = _Deployments(self.calls, state, error)
        self.online_endpoints = _Endpoints(self.calls)


def test_the_azure_ml_adapter_calls_the_mlclient_operations() -> None:
    ml = _MLClient()
    adapter = AzureMLOnlineEndpoints(ml)
    assert isinstance(adapter, OnlineEndpoints)
    plan = _plan()

    adapter.create_deployment(plan.steps[0].entity)
    adapter.update_endpoint(plan.steps[1].entity)
    assert adapter.healthy("churn-ep", "green") is True
    adapter.delete_deployment("churn-ep", "green")

    sent = ml.calls[2][1]
    assert ml.calls[:2] == [
        ("online_deployments.begin_create_or_update", "green"),
        ("online_endpoints.get", "churn-ep"),
    ]
    assert ml.calls[2][0] == "online_endpoints.begin_create_or_update"
    # the live endpoint's auth mode and tags stay; only the traffic is the plan's
    assert (sent["auth_mode"], sent["tags"]) == ("aml_token", {"team": "risk"})
    assert (sent["traffic"], sent["mirror_traffic"]) == ({"blue": 90, "green": 10}, {})
    assert ml.calls[3:] == [
        ("online_deployments.get", "green", "churn-ep"),
        ("online_deployments.begin_delete", "green", "churn-ep"),
    ]
    assert AzureMLOnlineEndpoints(_MLClient(state="Failed")).healthy("churn-ep", "green") is False


def test_the_azure_ml_adapter_maps_sdk_errors() -> None:
    from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError

    down = AzureMLOnlineEndpoints(_MLClient(error=ServiceRequestError("connection refused")))
    with pytest.raises(RolloutUnavailableError) as caught:
        down.create_deployment(_plan().steps[0].entity)
    assert isinstance(caught.value, TransientError) and isinstance(
        caught.value.__cause__, ServiceRequestError
    )

    gone = AzureMLOnlineEndpoints(_MLClient(error=ResourceNotFoundError("no such deployment")))
    gone.delete_deployment("churn-ep", "green")  # already deleted: fine
    assert gone.healthy("churn-ep", "green") is False


def test_apply_lets_transient_adapter_errors_propagate() -> None:
    from azure.core.exceptions import ServiceRequestError

    with pytest.raises(RolloutUnavailableError):
        apply(_plan(), AzureMLOnlineEndpoints(_MLClient(error=ServiceRequestError("timed out"))))


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, RolloutPlanError), (429, RolloutUnavailableError), (503, RolloutUnavailableError)],
)
def test_http_errors_are_final_for_4xx_and_transient_otherwise(status: int, error: type) -> None:
    from azure.core.exceptions import HttpResponseError

    failure = HttpResponseError(message="quota exceeded")
    failure.status_code = status
    with pytest.raises(error, match=f"create deployment 'green': .*{status}"):
        AzureMLOnlineEndpoints(_MLClient(error=failure)).create_deployment(_plan().steps[0].entity)
