"""Staged blue/green rollout of an Azure ML managed online endpoint: plan, validate, apply.

The plan is made of real azure-ai-ml entities built offline (``ManagedOnlineDeployment``,
``ManagedOnlineEndpoint``): create green at 0 %, optionally mirror traffic to it, then move live traffic in
steps, with a health check after every step and a rollback to blue when one fails. On success blue is kept
at 0 % (not deleted) so a rollback is one traffic update; the next rollout reuses its slot by swapping names.
azure-ai-ml is imported inside functions only: importing it takes seconds.

Example:
    >>> plan = plan_rollout("churn-ep", "blue", "green", "azureml:churn:4", steps=(10, 100), mirror=20)
    >>> [step.label for step in plan.steps]
    ['create green at 0%', 'traffic blue=100% green=0% mirror green=20%', 'traffic blue=90% green=10%', 'traffic blue=0% green=100%']
    >>> endpoints = FakeOnlineEndpoints()
    >>> result = apply(plan, endpoints)
    >>> result.status, endpoints.traffic
    ('completed', {'green': 100})
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal, Protocol, runtime_checkable

from shared.errors import InputError, TransientError

__all__ = [
    "AzureMLOnlineEndpoints",
    "FakeOnlineEndpoints",
    "OnlineEndpoints",
    "RolloutPlan",
    "RolloutPlanError",
    "RolloutResult",
    "RolloutStep",
    "RolloutUnavailableError",
    "apply",
    "deployment_name",
    "deployment_step",
    "endpoint_step",
    "plan_rollout",
    "roll_out_version",
    "validate",
]

MAX_MIRROR = 50


class RolloutPlanError(InputError):
    """A rollout that must not be sent (traffic, mirror, names), or that Azure ML rejected with a 4xx.

    Example:
        >>> RolloutPlanError("bad", problems=["x"]).to_record()["reason"]
        'invalid_rollout'
    """

    reason = "invalid_rollout"


class RolloutUnavailableError(TransientError):
    """Azure ML did not answer (transport error, 5xx, 408/409/429, a failed long-running operation)."""

    reason = "rollout_unavailable"


def _pct(mapping: Mapping[str, Any]) -> str:
    return " ".join(f"{name}={share}%" for name, share in mapping.items())


@dataclass(frozen=True)
class RolloutStep:
    """One thing sent to Azure ML: a deployment to create, or an endpoint whose traffic to set.

    Example:
        >>> endpoint_step("churn-ep", {"blue": 90, "green": 10}).as_dict()["traffic"]
        {'blue': 90, 'green': 10}
    """

    kind: Literal["create_deployment", "traffic", "rollback"]
    entity: Any  # ManagedOnlineDeployment for create_deployment, ManagedOnlineEndpoint otherwise
    label: str

    @property
    def traffic(self) -> dict[str, Any]:
        return dict(getattr(self.entity, "traffic", None) or {})

    @property
    def mirror_traffic(self) -> dict[str, Any]:
        return dict(getattr(self.entity, "mirror_traffic", None) or {})

    def as_dict(self) -> dict[str, Any]:
        """The entity's own offline serialization (``_to_dict()``, the YAML shape)."""
        return dict(self.entity._to_dict())


def deployment_step(
    endpoint: str, name: str, model: str, *, instance_type: str = "Standard_DS3_v2", instance_count: int = 1
) -> RolloutStep:
    """Create deployment ``name`` (it takes no traffic until an endpoint step gives it some)."""
    from azure.ai.ml.entities import ManagedOnlineDeployment

    entity = ManagedOnlineDeployment(
        name=name,
        endpoint_name=endpoint,
        model=model,
        instance_type=instance_type,
        instance_count=instance_count,
    )
    return RolloutStep("create_deployment", entity, f"create {name} at 0%")


def endpoint_step(
    endpoint: str,
    traffic: Mapping[str, int],
    mirror_traffic: Mapping[str, int] | None = None,
    *,
    kind: Literal["traffic", "rollback"] = "traffic",
) -> RolloutStep:
    """Set the endpoint's live traffic (and mirror traffic; ``{}`` clears it) to exactly these shares."""
    from azure.ai.ml.entities import ManagedOnlineEndpoint

    mirror = dict(mirror_traffic or {})
    entity = ManagedOnlineEndpoint(name=endpoint, traffic=dict(traffic), mirror_traffic=mirror)
    return RolloutStep(
        kind, entity, f"{kind} {_pct(traffic)}" + (f" mirror {_pct(mirror)}" if mirror else "")
    )


@dataclass(frozen=True)
class RolloutPlan:
    """A staged rollout of ``model`` as deployment ``green`` next to ``blue`` on ``endpoint``."""

    endpoint: str
    blue: str
    green: str
    model: str
    instance_type: str
    instance_count: int
    mirror: int | None
    traffic_steps: tuple[int, ...]
    steps: tuple[RolloutStep, ...]
    rollback: RolloutStep


def plan_rollout(
    endpoint: str,
    blue: str,
    green: str,
    model: str,
    *,
    instance_type: str = "Standard_DS3_v2",
    instance_count: int = 1,
    steps: Sequence[int] = (10, 50, 100),
    mirror: int | None = None,
) -> RolloutPlan:
    """Build the plan (offline, no validation: :func:`validate` and :func:`apply` do that).

    Example:
        >>> plan = plan_rollout("churn-ep", "blue", "green", "azureml:churn:4", steps=(50, 100))
        >>> [step.traffic for step in plan.steps[1:]], plan.rollback.traffic
        ([{'blue': 50, 'green': 50}, {'blue': 0, 'green': 100}], {'blue': 100, 'green': 0})
    """
    planned = [
        deployment_step(endpoint, green, model, instance_type=instance_type, instance_count=instance_count)
    ]
    if mirror is not None:
        planned.append(endpoint_step(endpoint, {blue: 100, green: 0}, {green: mirror}))
    planned += [endpoint_step(endpoint, {blue: 100 - share, green: share}, {}) for share in steps]
    rollback = endpoint_step(endpoint, {blue: 100, green: 0}, {}, kind="rollback")
    return RolloutPlan(
        endpoint,
        blue,
        green,
        model,
        instance_type,
        instance_count,
        mirror,
        tuple(steps),
        tuple(planned),
        rollback,
    )


def _name_problems(role: str, name: str) -> list[str]:
    """The SDK's own name rule (3-32 chars, a letter first, letters/digits/hyphens, no hyphen last), plus
    lower case: the SDK lower-cases traffic keys on send, so an upper-case name would not be what we planned."""
    from azure.ai.ml.entities._endpoint._endpoint_helpers import validate_endpoint_or_deployment_name
    from azure.ai.ml.exceptions import ValidationException

    try:
        validate_endpoint_or_deployment_name(name, is_deployment=role != "endpoint")
    except ValidationException as exc:
        return [f"{role} name {name!r}: {' '.join(exc.message.split())}"]
    return [] if name == name.lower() else [f"{role} name {name!r} must be lower-case"]


def _endpoint_problems(plan: RolloutPlan, index: int, step: RolloutStep) -> list[str]:
    where, problems = f"step {index} ({step.label})", []
    traffic, mirror = step.traffic, step.mirror_traffic
    if getattr(step.entity, "name", None) != plan.endpoint:
        problems.append(
            f"{where}: names endpoint {getattr(step.entity, 'name', None)!r}, not {plan.endpoint!r}"
        )
    if set(traffic) - {plan.blue, plan.green} or set(mirror) - {plan.green}:
        problems.append(
            f"{where}: traffic only to {plan.blue!r}/{plan.green!r}, mirror only to {plan.green!r}"
        )
    if any(not isinstance(v, int) or not 0 <= v <= 100 for v in traffic.values()):
        problems.append(f"{where}: each traffic share must be an integer in 0..100")
    elif sum(traffic.values()) != 100:
        problems.append(f"{where}: traffic sums to {sum(traffic.values())}, not 100")
    for name, share in mirror.items():
        if not isinstance(share, int) or not 0 < share <= MAX_MIRROR:
            problems.append(f"{where}: mirror share {share} of {name!r} must be in 1..{MAX_MIRROR}")
        if traffic.get(name):
            problems.append(f"{where}: mirror to {name!r}, which already takes {traffic[name]}% live traffic")
    return problems


def validate(plan: RolloutPlan) -> RolloutPlan:
    """Check everything that will be sent, before anything is; raise :class:`RolloutPlanError` listing all
    problems. Azure ML itself checks none of this client-side (a traffic sum of 110 serializes fine).

    Example:
        >>> validate(plan_rollout("churn-ep", "blue", "green", "azureml:churn:4", steps=(10, 50, 90)))
        Traceback (most recent call last):
        ...
        shared.rollout.RolloutPlanError: invalid rollout of 'churn-ep': the last traffic step must be 100, not 90
    """
    problems = _name_problems("endpoint", plan.endpoint)
    problems += _name_problems("blue deployment", plan.blue) + _name_problems("green deployment", plan.green)
    if plan.blue == plan.green:
        problems.append(f"blue and green are the same deployment {plan.blue!r}")
    shares = plan.traffic_steps
    if not shares or any(not 0 < s <= 100 for s in shares) or any(a >= b for a, b in pairwise(shares)):
        problems.append(f"traffic steps {shares} must be strictly increasing, each in 1..100")
    elif shares[-1] != 100:
        problems.append(f"the last traffic step must be 100, not {shares[-1]}")
    if plan.mirror is not None and not 0 < plan.mirror <= MAX_MIRROR:
        problems.append(f"mirror {plan.mirror}% must be in 1..{MAX_MIRROR}")
    create = plan.steps[0] if plan.steps else None
    if create is None or create.kind != "create_deployment":
        problems.append("the first step must create the green deployment")
    elif (create.entity.name, create.entity.endpoint_name) != (plan.green, plan.endpoint):
        problems.append(f"the first step creates {create.entity.name!r} on {create.entity.endpoint_name!r}")
    moves = plan.steps[1:]
    for index, step in enumerate(moves, 1):
        problems += _endpoint_problems(plan, index, step)
    problems += _endpoint_problems(plan, len(plan.steps), plan.rollback)
    green_shares = tuple(step.traffic.get(plan.green, 0) for step in moves if not step.mirror_traffic)
    mirrors = [step.mirror_traffic for step in moves if step.mirror_traffic]
    if green_shares != shares or mirrors != ([{plan.green: plan.mirror}] if plan.mirror else []):
        problems.append(
            f"the endpoint steps do not implement traffic steps {shares} with mirror {plan.mirror}"
        )
    if plan.rollback.traffic.get(plan.blue) != 100 or plan.rollback.mirror_traffic:
        problems.append(f"the rollback must send 100% to {plan.blue!r} and clear the mirror")
    if problems:
        message = f"invalid rollout of {plan.endpoint!r}: " + "; ".join(problems)
        raise RolloutPlanError(message, endpoint=plan.endpoint, problems=problems)
    return plan


@runtime_checkable
class OnlineEndpoints(Protocol):
    """The Azure ML online endpoint operations a rollout needs."""

    def create_deployment(self, deployment: Any) -> None: ...
    def update_endpoint(self, endpoint: Any) -> None: ...
    def delete_deployment(self, endpoint: str, name: str) -> None: ...
    def healthy(self, endpoint: str, deployment: str) -> bool: ...


@dataclass(frozen=True)
class RolloutResult:
    """What :func:`apply` did: ``completed`` or ``rolled_back`` (``failed_step`` indexes ``plan.steps``)."""

    status: Literal["completed", "rolled_back"]
    applied: tuple[RolloutStep, ...]
    reason: str
    failed_step: int | None = None


def _send(endpoints: OnlineEndpoints, step: RolloutStep) -> None:
    if step.kind == "create_deployment":
        endpoints.create_deployment(step.entity)
    else:
        endpoints.update_endpoint(step.entity)


def apply(plan: RolloutPlan, endpoints: OnlineEndpoints) -> RolloutResult:
    """Validate, then send each step and check green's health after it; on a failed check send the
    rollback (blue 100 %, no mirror) and delete green. A failed check is a decision and returns; an invalid
    plan raises before any call; adapter errors (``RolloutUnavailableError``) propagate."""
    validate(plan)
    applied: list[RolloutStep] = []
    for index, step in enumerate(plan.steps):
        _send(endpoints, step)
        applied.append(step)
        if not endpoints.healthy(plan.endpoint, plan.green):
            _send(endpoints, plan.rollback)
            endpoints.delete_deployment(plan.endpoint, plan.green)
            reason = (
                f"step {index} ({step.label}): {plan.green!r} unhealthy; "
                f"traffic back to {plan.blue!r}, {plan.green!r} deleted"
            )
            return RolloutResult("rolled_back", tuple(applied), reason, failed_step=index)
    reason = f"{plan.green!r} takes 100%; {plan.blue!r} kept at 0% for rollback"
    return RolloutResult("completed", tuple(applied), reason)


@contextmanager
def _azure_errors(what: str) -> Iterator[None]:
    """4xx (not 408/409/429) and SDK validation → RolloutPlanError (final); other azure errors → transient."""
    from azure.ai.ml.exceptions import ValidationException

    from shared.adapters._azure import azureml_errors

    with azureml_errors(
        what, rejected=RolloutPlanError, unavailable=RolloutUnavailableError, final=(ValidationException,)
    ):
        yield


class AzureMLOnlineEndpoints:
    """:class:`OnlineEndpoints` over an ``azure.ai.ml.MLClient``; every call waits for its operation.

    ``update_endpoint`` fetches the live endpoint and sends it with the planned ``traffic`` and
    ``mirror_traffic``: a PUT of the offline entity would reset its auth mode, tags and identity.
    ``healthy`` means provisioning state ``Succeeded`` (a missing deployment is unhealthy), not a scoring probe.
    """

    def __init__(self, ml_client: Any) -> None:
        self._ml = ml_client

    def create_deployment(self, deployment: Any) -> None:
        with _azure_errors(f"create deployment {deployment.name!r}"):
            self._ml.online_deployments.begin_create_or_update(deployment).result()

    def update_endpoint(self, endpoint: Any) -> None:
        with _azure_errors(f"update endpoint {endpoint.name!r}"):
            live = self._ml.online_endpoints.get(endpoint.name)
            live.traffic, live.mirror_traffic = dict(endpoint.traffic), dict(endpoint.mirror_traffic or {})
            self._ml.online_endpoints.begin_create_or_update(live).result()

    def delete_deployment(self, endpoint: str, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with _azure_errors(f"delete deployment {name!r}"):
            try:
                self._ml.online_deployments.begin_delete(name=name, endpoint_name=endpoint).result()
            except ResourceNotFoundError:
                pass  # already gone: deleting is idempotent

    def healthy(self, endpoint: str, deployment: str) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        with _azure_errors(f"get deployment {deployment!r}"):
            try:
                state = self._ml.online_deployments.get(
                    name=deployment, endpoint_name=endpoint
                ).provisioning_state
            except ResourceNotFoundError:
                return False
        return str(state).lower() == "succeeded"


class FakeOnlineEndpoints:
    """In-memory :class:`OnlineEndpoints` for one endpoint; records every call in ``calls``.

    Like Azure ML it drops 0 % entries, refuses traffic to unknown deployments and deleting a deployment that
    takes traffic. ``unhealthy_steps`` are indices of health checks (``apply`` checks once per plan step,
    so they are step indices); ``unhealthy`` are deployments that always fail their check.

    Example:
        >>> fake = FakeOnlineEndpoints()
        >>> fake.healthy("churn-ep", "blue"), fake.calls
        (True, [('healthy', 'blue')])
    """

    def __init__(
        self,
        *,
        unhealthy_steps: Iterable[int] = (),
        unhealthy: Iterable[str] = (),
        deployments: Iterable[str] = ("blue",),
        traffic: Mapping[str, int] | None = None,
    ) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.unhealthy_steps, self.unhealthy = set(unhealthy_steps), set(unhealthy)
        self.deployments = set(deployments)
        self.traffic: dict[str, int] = dict(traffic if traffic is not None else {"blue": 100})
        self.mirror_traffic: dict[str, int] = {}
        self._checks = 0

    def create_deployment(self, deployment: Any) -> None:
        self.calls.append(("create_deployment", dict(deployment._to_dict())))
        self.deployments.add(deployment.name)

    def update_endpoint(self, endpoint: Any) -> None:
        self.calls.append(("update_endpoint", dict(endpoint._to_dict())))
        traffic = {k.lower(): int(v) for k, v in (endpoint.traffic or {}).items() if int(v)}
        mirror = {k.lower(): int(v) for k, v in (endpoint.mirror_traffic or {}).items() if int(v)}
        if unknown := (set(traffic) | set(mirror)) - self.deployments:
            raise RolloutPlanError(f"traffic to unknown deployments {sorted(unknown)}")
        self.traffic, self.mirror_traffic = traffic, mirror

    def delete_deployment(self, endpoint: str, name: str) -> None:
        self.calls.append(("delete_deployment", name))
        if self.traffic.get(name) or self.mirror_traffic.get(name):
            raise RolloutPlanError(f"deployment {name!r} still takes traffic")
        self.deployments.discard(name)

    def healthy(self, endpoint: str, deployment: str) -> bool:
        self.calls.append(("healthy", deployment))
        check, self._checks = self._checks, self._checks + 1
        return (
            deployment in self.deployments
            and deployment not in self.unhealthy
            and check not in self.unhealthy_steps
        )


def deployment_name(model: str, version: str) -> str:
    """The online deployment that serves one model version: lower-case, 3-32 characters, starts with a letter.

    Example:
        >>> deployment_name("Scorehook_Sample", "12")
        'scorehook-sample-v12'
    """
    import re as _re

    base = _re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-") or "model"
    if not base[0].isalpha():
        base = f"m-{base}"
    suffix = f"-v{version}"
    return base[: 32 - len(suffix)].rstrip("-") + suffix


def roll_out_version(
    endpoints: OnlineEndpoints, endpoint: str, model: str, version: str, champion: str | None, *,
    steps: Sequence[int] = (10, 50, 100), mirror: int | None = None, instance_type: str = "Standard_DS3_v2",
) -> RolloutResult:  # fmt: skip
    """Serve ``model`` ``version`` on ``endpoint``: blue/green from the champion's deployment, or, for the first
    version, one deployment at 100 % (checked for health, removed again when unhealthy)."""
    green = deployment_name(model, version)
    reference = f"azureml:{model}:{version}"
    if champion is None:
        first = (deployment_step(endpoint, green, reference, instance_type=instance_type),
                 endpoint_step(endpoint, {green: 100}, {}))  # fmt: skip
        for step in first:
            _send(endpoints, step)
        if endpoints.healthy(endpoint, green):
            return RolloutResult("completed", first, f"{green!r} is the endpoint's first deployment, at 100%")
        endpoints.update_endpoint(endpoint_step(endpoint, {green: 0}, {}).entity)
        endpoints.delete_deployment(endpoint, green)
        return RolloutResult("rolled_back", first, f"{green!r} unhealthy; removed", failed_step=0)
    plan = plan_rollout(endpoint, deployment_name(model, champion), green, reference, instance_type=instance_type,
                        steps=steps, mirror=mirror)  # fmt: skip
    return apply(plan, endpoints)
