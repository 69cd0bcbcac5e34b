"""Validation, evaluation and the promote / hold / reject policy, on real ONNX models trained here."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from shared.deployment import DeploymentPolicy, Validation, decide, evaluate, validate_candidate
from shared.models import ModelInput, OnnxModel


@pytest.fixture(scope="module")
def data():
    from training.data import generate

    return {
        "train": generate(4000, seed=11, include_label=True),
        "eval": generate(3000, seed=12, include_label=True),
    }


def _onnx(table: pa.Table) -> OnnxModel:
    from training.train import to_onnx, train

    pipeline = train(table, kind="linear")
    return OnnxModel.from_file(to_onnx(pipeline, table.slice(0, 500)))


@pytest.fixture(scope="module")
def good(data):
    return _onnx(data["train"])


@pytest.fixture(scope="module")
def noise(data):
    """Trained on shuffled labels: as good as a coin."""
    labels = np.random.default_rng(0).permutation(data["train"].column("label").to_numpy())
    return _onnx(
        data["train"].set_column(data["train"].schema.get_field_index("label"), "label", pa.array(labels))
    )


def _example(data, rows=20):
    return data["eval"].slice(0, rows).combine_chunks().to_batches()[0]


def test_evaluate_matches_scikit_learn(good, data):
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    metrics = evaluate(good, data["eval"])
    batch = data["eval"].combine_chunks().to_batches()[0]
    predicted = good.predict(batch)
    truth = data["eval"].column("label").to_numpy()
    assert metrics["auc"] == pytest.approx(roc_auc_score(truth, predicted["probability"]), abs=1e-9)
    assert metrics["f1"] == pytest.approx(f1_score(truth, predicted["prediction"]), abs=1e-9)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, predicted["prediction"]), abs=1e-9)
    assert metrics["rows"] == 3000 and metrics["auc"] > 0.75


def test_a_valid_candidate_passes_validation(good, data):
    validation = validate_candidate(good, _example(data), DeploymentPolicy(), required_inputs=good.inputs)
    assert validation.ok and validation.reasons == [] and validation.smoke_rows == 20
    assert 0 < validation.p95_ms < DeploymentPolicy().latency_budget_ms


def test_a_broken_signature_is_rejected_at_validation(good, data):
    required = [*good.inputs, ModelInput("customer_age", "float32")]
    changed = [ModelInput("region", "float32") if c.name == "region" else c for c in good.inputs]
    validation = validate_candidate(good, _example(data), DeploymentPolicy(), required_inputs=required)
    assert not validation.ok and "'customer_age'" in validation.reasons[0]
    validation = validate_candidate(good, _example(data), DeploymentPolicy(), required_inputs=changed)
    assert not validation.ok and "'region' is object, the route needs float32" in validation.reasons[0]
    decision = decide({}, None, validation, DeploymentPolicy())
    assert decision.action == "reject" and decision.reasons == tuple(validation.reasons)


def test_an_example_without_the_model_inputs_fails_the_smoke_test(good, data):
    validation = validate_candidate(good, _example(data).drop_columns(["x05"]), DeploymentPolicy())
    assert not validation.ok and "x05" in validation.reasons[0]


def test_a_slow_candidate_is_over_its_latency_budget(good, data):
    validation = validate_candidate(
        good, _example(data), DeploymentPolicy(latency_budget_ms=1e-6, latency_runs=3)
    )
    assert not validation.ok and "exceeds the budget" in validation.reasons[0]


def test_a_better_challenger_is_promoted_and_a_worse_one_rejected_with_its_metrics(good, noise, data):
    policy = DeploymentPolicy()
    good_metrics, noise_metrics = evaluate(good, data["eval"]), evaluate(noise, data["eval"])
    ok = Validation(ok=True)
    promoted = decide(good_metrics, noise_metrics, ok, policy)
    assert promoted.action == "promote" and promoted.champion == noise_metrics
    rejected = decide(noise_metrics, good_metrics, ok, policy)
    assert rejected.action == "reject" and "is worse than the champion" in rejected.reasons[0]
    record = rejected.to_record()
    assert (
        record["challenger_metrics"]["auc"] == noise_metrics["auc"]
        and record["champion_metrics"] == good_metrics
    )


def test_no_champion_promotes_a_valid_first_version_and_approval_holds():
    assert decide({"auc": 0.7}, None, Validation(ok=True), DeploymentPolicy()).action == "promote"
    held = decide({"auc": 0.9}, {"auc": 0.8}, Validation(ok=True), DeploymentPolicy(require_approval=True))
    assert held.action == "hold" and held.reasons[-1] == "the policy requires a manual approval"


def test_guards_and_lower_is_better_metrics():
    policy = DeploymentPolicy(primary_metric="auc", guard_metrics=("f1",), guard_tolerance=0.02)
    guarded = decide({"auc": 0.90, "f1": 0.60}, {"auc": 0.85, "f1": 0.70}, Validation(ok=True), policy)
    assert guarded.action == "reject" and guarded.reasons[0].startswith("guard f1 regresses")
    rmse = DeploymentPolicy(primary_metric="rmse", guard_metrics=(), margin=0.1)
    assert decide({"rmse": 1.05}, {"rmse": 1.0}, Validation(ok=True), rmse).action == "promote"
    assert decide({"rmse": 1.2}, {"rmse": 1.0}, Validation(ok=True), rmse).action == "reject"


class Flow:
    """The deployment flow on the in-memory fakes, with real ONNX models registered in a fake registry."""

    def __init__(self, data, paths):
        from shared.deployment import DeploymentService
        from shared.models import ModelCache, ModelProvider
        from shared.testing import FakeBlobStore, FakeLedger, FakePublisher, FakeRegistry

        self.registry, self.ledger, self.publisher, self.paths = (
            FakeRegistry(),
            FakeLedger(),
            FakePublisher(),
            paths,
        )
        provider = ModelProvider(self.registry, FakeBlobStore(), ModelCache())
        self.service = DeploymentService(
            self.registry, provider, self.ledger, self.publisher, lambda: data["eval"]
        )

    def register(self, kind: str):
        from shared.registrations import ModelVersionRegistered

        version = self.registry.register("churn", self.paths[kind])
        return ModelVersionRegistered("churn", version.version, "mlflow", f"delivery-{version.version}")


@pytest.fixture
def flow(data, good, noise, tiny_onnx, tmp_path_factory):
    from training.train import to_onnx, train

    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for kind, table in (("good", data["train"]), ("noise", None)):
        if table is None:
            labels = np.random.default_rng(0).permutation(data["train"].column("label").to_numpy())
            table = data["train"].set_column(
                data["train"].schema.get_field_index("label"), "label", pa.array(labels)
            )
        paths[kind] = folder / f"{kind}.onnx"
        paths[kind].write_bytes(to_onnx(train(table, kind="linear"), table.slice(0, 500)))
    paths["broken"] = tiny_onnx  # other inputs: its signature does not fit the route
    return Flow(data, paths)


def test_the_first_valid_version_is_promoted_and_a_better_one_replaces_it(flow):
    first = flow.service.handle(flow.register("noise"))
    assert (first.status, first.champion) == ("promote", "1")
    second = flow.service.handle(flow.register("good"))
    assert (second.status, second.champion) == ("promote", "2")
    assert flow.registry.alias_version("churn", "champion") == "2"
    assert flow.registry.alias_version("churn", "previous") == "1"
    assert flow.publisher.types() == ["Scorehook.Model.Promoted", "Scorehook.Model.Promoted"]
    assert flow.registry.tags[("churn", "2")]["scorehook.decision"] == "promote"
    record = flow.ledger.get("registration:churn/2")
    assert (
        record.status == "promote"
        and record.details["champion_metrics"]["auc"] < record.details["challenger_metrics"]["auc"]
    )


def test_a_worse_version_is_rejected_with_the_metrics_in_the_record(flow):
    flow.service.handle(flow.register("good"))
    outcome = flow.service.handle(flow.register("noise"))
    assert outcome.status == "reject" and flow.registry.alias_version("churn", "champion") == "1"
    record = flow.ledger.get("registration:churn/2").details
    assert record["action"] == "reject" and "worse than the champion" in record["reasons"][0]
    assert set(record["challenger_metrics"]) >= {"auc", "f1"} and set(record["champion_metrics"]) >= {
        "auc",
        "f1",
    }
    assert flow.publisher.types()[-1] == "Scorehook.Model.Rejected"


def test_a_version_with_a_broken_signature_is_rejected_at_validation(flow):
    flow.service.handle(flow.register("good"))
    outcome = flow.service.handle(flow.register("broken"))
    assert outcome.status == "reject" and "is not a model input" in outcome.decision.reasons[0]
    assert flow.registry.alias_version("churn", "champion") == "1"


def test_a_duplicate_delivery_gives_one_decision(flow):
    registration = flow.register("good")
    assert flow.service.handle(registration).status == "promote"
    assert flow.service.handle(registration).status == "duplicate"
    assert flow.publisher.types() == ["Scorehook.Model.Promoted"]


def test_an_older_version_arriving_late_never_replaces_a_newer_champion(flow):
    v1, v2, v3 = flow.register("noise"), flow.register("good"), flow.register("good")
    assert flow.service.handle(v1).status == "promote"
    assert flow.service.handle(v3).status == "promote"
    late = flow.service.handle(v2)
    assert late.status == "reject" and "older than the champion" in late.decision.reasons[0]
    assert flow.registry.alias_version("churn", "champion") == "3"


def test_rollback_restores_the_previous_champion(flow):
    flow.service.handle(flow.register("noise"))
    flow.service.handle(flow.register("good"))
    outcome = flow.service.rollback("churn")
    assert outcome.champion == "1" and flow.registry.alias_version("churn", "champion") == "1"
    assert flow.registry.alias_version("churn", "previous") == "2"
    assert flow.publisher.events[-1][2] == {"model_name": "churn", "version": "1", "rollback_from": "2",
                                            "reason": None}  # fmt: skip
    again = flow.service.rollback("churn")  # a second run changes nothing (it used to swap back)
    assert again.status == "unchanged" and flow.registry.alias_version("churn", "champion") == "1"


def test_a_promotion_is_rolled_out_on_the_online_endpoint_and_a_failed_rollout_rejects(flow):
    from shared.rollout import FakeOnlineEndpoints, roll_out_version

    endpoints = FakeOnlineEndpoints(deployments=(), traffic={})
    flow.service.rollout = lambda name, version, champion: roll_out_version(
        endpoints, "churn-ep", name, version, champion, steps=(10, 100)
    )
    first = flow.service.handle(flow.register("good"))
    assert first.status == "promote" and endpoints.traffic == {"churn-v1": 100}
    second = flow.service.handle(flow.register("good"))
    assert second.status == "promote" and second.decision.rollout["status"] == "completed"
    assert endpoints.traffic == {"churn-v2": 100}  # blue kept at 0 % (dropped from traffic, still deployed)
    assert "churn-v1" in endpoints.deployments
    endpoints.unhealthy = {"churn-v3"}
    third = flow.service.handle(flow.register("good"))
    assert third.status == "reject" and "staged rollout rolled back" in third.decision.reasons[-1]
    assert flow.registry.alias_version("churn", "champion") == "2" and endpoints.traffic == {"churn-v2": 100}
    assert "churn-v3" not in endpoints.deployments
    assert flow.ledger.get("registration:churn/3").details["rollout"]["status"] == "rolled_back"


def test_a_held_version_is_promoted_by_its_approval_once(flow):
    from shared.deployment import DeploymentPolicy
    from shared.registrations import ApprovalGranted

    flow.service.handle(flow.register("good"))
    flow.service.policy = DeploymentPolicy(require_approval=True)
    held = flow.service.handle(flow.register("good"))
    assert held.status == "hold" and flow.registry.alias_version("churn", "champion") == "1"
    assert flow.publisher.types()[-1] == "Scorehook.Model.Held"
    assert flow.service.approve(ApprovalGranted("churn", "1", "d-x")).status == "ignored"  # not held
    approved = flow.service.approve(ApprovalGranted("churn", "2", "d-1"))
    assert approved.status == "promote" and flow.registry.alias_version("churn", "champion") == "2"
    assert flow.service.approve(ApprovalGranted("churn", "2", "d-2")).status == "duplicate"
    assert flow.publisher.types()[-1] == "Scorehook.Model.Promoted"
    assert flow.registry.tags[("churn", "2")]["scorehook.approved"] == "true"
